"""Storage: pools, the volumes they hold, and a domain's view of both.

A pool is configured in qubes.xml (``<pool name=... driver=... />``) and
implemented by a driver found in the ``qubes.storage`` entry-point group.
A domain's ``volume-config`` says, per volume (``root``, ``private``,
``volatile``, ``kernel``), which pool holds it and how it behaves:

- ``rw``: the domain may write to it;
- ``snap_on_start``: at start it is a fresh snapshot of ``source``
  (another domain's volume, in the same pool), its changes dropped at
  stop;
- ``save_on_stop``: changes are kept when the domain stops;
- ``revisions_to_keep``: how many earlier versions are kept, one taken
  at each start;
- ``ephemeral``: its content is encrypted with a key that dies with
  the domain (not done by the drivers here: a volume asking for it is
  refused with :class:`~qubes.exc.QubesUnsupportedError`).

From these, every volume has one :attr:`Volume.role`, and the lifecycle
is written once, here, on top of a few primitives each driver provides
(make an empty volume, make a snapshot of another, discard, keep a
revision, import data). :class:`Storage` runs it for all the volumes of
a domain, at create, start, stop and remove; a failure in any step
undoes the steps before it.

The configuration strings are kept exactly as read, so qubes.xml round-
trips; :class:`Volume` gives the typed view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import re
from collections.abc import Callable
from typing import Any

from qubes import exc, generation, plugins
from qubes.properties import parse_bool

__all__ = [
    "Pool",
    "UnknownDriverPool",
    "Volume",
    "Storage",
    "make_pool",
    "join",
    "PERSISTENT",
    "SNAPSHOT",
    "VOLATILE",
    "READ_ONLY",
]

log = logging.getLogger(__name__)

#: kept at stop, made empty when the domain is created (private, and a
#: template's root)
PERSISTENT = "persistent"
#: a copy of its source, made at each start (an AppVM's root)
SNAPSHOT = "snapshot"
#: empty at each start, dropped at stop (volatile)
VOLATILE = "volatile"
#: given, never written (kernel)
READ_ONLY = "read-only"

_FLAGS = {"True": True, "False": False}
#: printable, at least one character, no leading slash (see below)
_RELATIVE = re.compile("[^/\x00-\x1f\x7f][^\x00-\x1f\x7f]*")
_ABSOLUTE = re.compile("/[^\x00-\x1f\x7f]*")


def _is_clean_path(path: str, absolute: bool) -> bool:
    # Paths go into domain XML and to file operations: printable, no
    # climbing out of the pool.
    pattern = _ABSOLUTE if absolute else _RELATIVE
    if pattern.fullmatch(path) is None:
        return False
    return "/../" not in f"/{path}/"


def join(folder: str, name: str) -> str:
    """*name*, a clean relative path, under *folder*: as
    :func:`os.path.join` gives it, in a fraction of its time (it runs
    for every volume of every domain)."""
    if folder.endswith("/"):
        return folder + name
    return f"{folder}/{name}"


def _flag(config: dict[str, str], name: str) -> bool:
    # qubes.xml says True and False; anything else goes the long way.
    value = config.get(name, "False")
    found = _FLAGS.get(value)
    return parse_bool(value) if found is None else found


class Volume:
    """One volume of a domain, as its pool sees it.

    :param pool: the pool that holds it
    :param config: the volume-config attributes (strings)
    :raises QubesStorageError: an attribute has an invalid value
    """

    #: how the engine sees the volume: ``raw`` or ``qcow2`` images, or a
    #: ``dir`` (a folder, for containers)
    format = "raw"

    @property
    def attached(self) -> bool:
        """Whether the volume is given to the domain as a disk."""
        return True

    def __init__(self, pool: Pool, config: dict[str, str]) -> None:
        self.pool = pool
        self.config = config
        get = config.get
        try:
            self.name = config["name"]
            self.vid = get("vid", "")
            self.rw = _flag(config, "rw")
            self.snap_on_start = _flag(config, "snap_on_start")
            self.save_on_stop = _flag(config, "save_on_stop")
            self.ephemeral = _flag(config, "ephemeral")
            self.source = get("source") or None
            self.size = int(get("size", "0"))
            self.revisions_to_keep = int(get("revisions_to_keep", "0"))
        except (KeyError, ValueError) as err:
            raise exc.QubesStorageError(
                f"volume {get('name')!r}: invalid configuration: {err}"
            ) from err
        self._check_vid(self.vid)
        if self.source is not None:
            self._check_vid(self.source)

    def _check_vid(self, vid: str) -> None:
        if not _is_clean_path(vid, absolute=False):
            raise exc.QubesStorageError(
                f"volume {self.name!r}: {vid!r} is not a volume id (a "
                "relative path of printable characters, no '..')"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pool.name}:{self.vid}>"

    @property
    def role(self) -> str:
        """:data:`PERSISTENT`, :data:`SNAPSHOT`, :data:`VOLATILE` or
        :data:`READ_ONLY`."""
        if self.snap_on_start:
            return SNAPSHOT
        if self.save_on_stop:
            return PERSISTENT
        if self.rw:
            return VOLATILE
        return READ_ONLY

    @property
    def path(self) -> str:
        """The image file (or folder) the domain's disk is made from.

        :raises QubesUnsupportedError: the pool's driver is not installed
        """
        raise self._unsupported()

    def _unsupported(self) -> exc.QubesUnsupportedError:
        return exc.QubesUnsupportedError(
            f"volume {self.name!r}: pool {self.pool.name!r} has driver "
            f"{self.pool.config.get('driver')!r}, which cannot do that"
        )

    # -- what a driver provides -----------------------------------------

    def exists(self) -> bool:
        """Whether the volume's data is there."""
        raise self._unsupported()

    def source_exists(self) -> bool:
        """Whether the source of a snapshot is there."""
        raise self._unsupported()

    def make_empty(self) -> None:
        """Make the volume, empty (replacing what is there)."""
        raise self._unsupported()

    def make_snapshot(self) -> None:
        """Make the volume a fresh snapshot of its source."""
        raise self._unsupported()

    def discard(self) -> None:
        """Remove the volume's data; nothing if there is none."""
        raise self._unsupported()

    def keep_revision(self) -> None:
        """Keep the data as it is now as a revision, and drop revisions
        beyond :attr:`revisions_to_keep`."""
        raise self._unsupported()

    def discard_revisions(self) -> None:
        """Remove every kept revision."""

    def import_data(self, source: str) -> None:
        """Replace the volume's data with a copy of *source* (an image
        file, or a folder for folder pools)."""
        raise self._unsupported()

    # -- the lifecycle, the same for every driver -------------------------

    def verify(self) -> None:
        """Check that the volume can be used to start a domain.

        :raises QubesStorageError: its data (or its source) is missing
        """
        if self.ephemeral:
            raise exc.QubesUnsupportedError(
                f"volume {self.name!r}: ephemeral volumes are not supported "
                f"by pool {self.pool.name!r}"
            )
        role = self.role
        if role == PERSISTENT and not self.exists():
            raise exc.QubesStorageError(
                f"volume {self.name!r} is missing: no {self.path}"
            )
        if role == SNAPSHOT and not self.source_exists():
            raise exc.QubesStorageError(
                f"volume {self.name!r}: its source {self.source!r} is "
                f"missing in pool {self.pool.name!r}"
            )

    # The steps block (copies, mounts); :class:`Storage` runs all of a
    # domain's in one worker thread, one hop off the event loop.

    def create_now(self) -> None:
        """At domain creation: make a persistent volume, empty."""
        if self.role == PERSISTENT and not self.exists():
            self.make_empty()

    @property
    def start_needs_work(self) -> bool:
        """Whether :meth:`start_now` has anything to do."""
        role = self.role
        if role == PERSISTENT:
            return self.revisions_to_keep > 0
        return role != READ_ONLY

    @property
    def stop_needs_work(self) -> bool:
        """Whether :meth:`stop_now` has anything to do."""
        return self.role in (SNAPSHOT, VOLATILE)

    def start_now(self) -> None:
        """Before the domain starts: a snapshot is taken, a volatile
        volume emptied, a persistent one's revision kept."""
        role = self.role
        if role == SNAPSHOT:
            self.make_snapshot()
        elif role == VOLATILE:
            self.make_empty()
        elif role == PERSISTENT and self.revisions_to_keep > 0:
            self.keep_revision()

    def stop_now(self) -> None:
        """After the domain stopped: what was not to be kept goes."""
        if self.role in (SNAPSHOT, VOLATILE):
            self.discard()

    def remove_now(self) -> None:
        """With the domain: the data and every revision go."""
        if self.role != READ_ONLY:
            self.discard()
            self.discard_revisions()

    async def create(self) -> None:
        """:meth:`create_now` in a worker thread."""
        await _blocking(self.create_now)

    async def start(self) -> None:
        """:meth:`start_now` in a worker thread."""
        await _blocking(self.start_now)

    async def stop(self) -> None:
        """:meth:`stop_now` in a worker thread."""
        await _blocking(self.stop_now)

    async def remove(self) -> None:
        """:meth:`remove_now` in a worker thread."""
        await _blocking(self.remove_now)


#: threads for the blocking work of volumes (copies, mounts): enough that
#: domains starting together do not wait for one another's
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(
    16, thread_name_prefix="qubes-storage"
)


async def _blocking(func: Callable[[], None]) -> None:
    # File copies and mounts block: off the event loop.
    await asyncio.get_running_loop().run_in_executor(_EXECUTOR, func)


class Pool:
    """A storage pool: a name, a driver and the driver's settings.

    Subclasses (drivers) decide where volumes live and how they are made.

    :param name: the pool's name in qubes.xml
    :param config: every attribute of ``<pool>`` but ``name`` (strings)
    """

    driver = ""
    volume_class: type[Volume] = Volume

    def __init__(self, name: str, **config: str) -> None:
        self.name = name
        self.config = dict(config)
        if self.driver:
            self.config.setdefault("driver", self.driver)
        folder = self.config.get("dir_path")
        if folder is not None and not _is_clean_path(folder, absolute=True):
            raise exc.QubesStorageError(
                f"pool {name!r}: dir_path {folder!r} is not an absolute "
                "path of printable characters"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def init_volume(self, vm: Any, config: dict[str, str]) -> Volume:
        """The :class:`Volume` of *vm* described by *config*."""
        return self.volume_class(self, config)

    def __xml__(self) -> Any:
        import lxml.etree

        node = lxml.etree.Element("pool")
        node.set("name", self.name)
        for key, value in self.config.items():
            node.set(key, value)
        return node


class UnknownDriverPool(Pool):
    """A pool whose driver is not installed here.

    Its configuration is kept and saved as read; its volumes can be
    described but not used: using one raises
    :class:`~qubes.exc.QubesUnsupportedError` instead.
    """


def make_pool(name: str, config: dict[str, str]) -> Pool:
    """Make the pool *name* with the driver that ``config['driver']``
    names; an unknown driver gives an :class:`UnknownDriverPool`.

    :param config: the ``<pool>`` attributes but ``name``, in order
    """
    try:
        cls = plugins.load(plugins.GROUP_STORAGE, config.get("driver", ""))
    except LookupError:
        cls = UnknownDriverPool
    return cls(name, **config)  # type: ignore[no-any-return]


class Storage:
    """A domain's volumes, built from its ``volume_config`` on first use,
    and their lifecycle.

    :param vm: the domain
    """

    __slots__ = ("_volumes", "vm")

    def __init__(self, vm: Any) -> None:
        self.vm = vm
        self._volumes: dict[str, Volume] | None = None

    @property
    def volumes(self) -> dict[str, Volume]:
        """Volume name to :class:`Volume`.

        :raises QubesStorageError: a volume names a pool that is missing
        """
        if self._volumes is None:
            self._volumes = {
                name: self._init_volume(config)
                for name, config in self.vm.volume_config.items()
            }
        return self._volumes

    def _init_volume(self, config: dict[str, str]) -> Volume:
        pool_name = config.get("pool", "")
        pool = self.vm.app.pools.get(pool_name)
        if pool is None:
            raise exc.QubesStorageError(
                f"volume {config.get('name')!r}: no pool {pool_name!r}",
                domain=self.vm.name,
            )
        try:
            volume: Volume = pool.init_volume(self.vm, config)
        except exc.QubesException as err:
            err.locate(domain=self.vm.name)
            raise
        return volume

    def kernel_volume(self) -> Volume | None:
        """The kernel volume of the domain's current kernel, or None.

        The configured kernel volume names the kernel it was made with;
        when the domain's kernel changed since (its own, or its
        template's it follows), this is a volume of the current one.
        """
        kernel = self.vm.kernel
        if kernel is None:
            return None
        volume = self.volumes.get("kernel")
        if volume is None:
            # Made while it had no kernel (in a store without a default
            # kernel, set since): the volume a new domain would have.
            made = self.vm.default_volume_config().get("kernel")
            return None if made is None else self._init_volume(made)
        if volume.vid != kernel:
            config = dict(volume.config, vid=kernel)
            volume = volume.pool.init_volume(self.vm, config)
        return volume

    def _in_use(self) -> list[Volume]:
        # The kernel volume is the one of the current kernel.
        found = [v for n, v in self.volumes.items() if n != "kernel"]
        kernel = self.kernel_volume()
        if kernel is not None:
            found.append(kernel)
        return found

    def verify(self, volumes: list[Volume] | None = None) -> None:
        """Check every volume (of *volumes*, by default those in use)
        can be used for a start.

        :raises QubesStorageError: one cannot; the error names it
        """
        # The kernel first: a kernel that is not installed is the likelier
        # mistake, and says more than the disks that follow from it.
        checked = self._in_use() if volumes is None else volumes
        try:
            for volume in reversed(checked):
                volume.verify()
        except exc.QubesException as err:
            err.locate(domain=self.vm.name)
            raise

    async def create(self) -> None:
        """Make the volumes of a new domain; on failure, remove those
        made."""
        await self._run(self._each, self._in_use(), "create_now", "remove_now")

    def _in_use_but(self, unused: frozenset[str]) -> list[Volume]:
        in_use = self._in_use()
        if not unused:
            return in_use
        return [volume for volume in in_use if volume.name not in unused]

    async def start(self, unused: frozenset[str] = frozenset()) -> None:
        """Check every volume (:meth:`verify`), then prepare them for a
        start; on failure, stop those prepared. Volumes that need
        nothing are left out: with none left, no worker thread is woken.

        :param unused: names of volumes the backend does without (a
            container's volatile and kernel volumes): neither checked
            nor made
        """
        in_use = self._in_use_but(unused)
        self.verify(in_use)
        volumes = [v for v in in_use if v.start_needs_work]
        if volumes:
            await self._run(self._each, volumes, "start_now", "stop_now")

    async def stop(self, unused: frozenset[str] = frozenset()) -> None:
        """Release every volume after a stop (but the *unused* ones, as
        for :meth:`start`); every volume is tried, and the first failure
        is raised after."""
        volumes = [v for v in self._in_use_but(unused) if v.stop_needs_work]
        if volumes:
            await self._run(self._stop_all, volumes)

    async def remove(self) -> None:
        """Remove every volume of a domain being removed."""
        await self._run(self._remove_all, list(self.volumes.values()))

    async def _run(
        self, func: Callable[..., None], volumes: list[Volume], *args: str
    ) -> None:
        # The volumes are built here, in the event loop's thread; only
        # their steps run in the worker.
        try:
            await _blocking(functools.partial(func, volumes, *args))
        except exc.QubesException as err:
            err.locate(domain=self.vm.name)
            raise

    def _stop_all(self, volumes: list[Volume]) -> None:
        failure: BaseException | None = None
        for volume in volumes:
            try:
                volume.stop_now()
            except Exception as err:  # the next volumes still go
                log.warning("%s: volume %s: %s", self.vm.name, volume.name, err)
                failure = failure or err
        if failure is not None:
            raise failure

    @staticmethod
    def _remove_all(volumes: list[Volume]) -> None:
        for volume in volumes:
            volume.remove_now()

    def _each(self, volumes: list[Volume], step: str, undo: str) -> None:
        done: list[Volume] = []
        try:
            for volume in volumes:
                getattr(volume, step)()
                done.append(volume)
        except BaseException:
            for volume in reversed(done):
                with contextlib.suppress(Exception):
                    getattr(volume, undo)()
            raise

    def invalidate(self) -> None:
        """Forget the built volumes (after the configuration changed)."""
        self._volumes = None
        generation.bump()
