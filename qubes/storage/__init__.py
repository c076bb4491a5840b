"""Storage: pools, the volumes they hold, and a domain's view of both.

A pool is configured in qubes.xml (``<pool name=... driver=... />``) and
implemented by a driver found in the ``qubes.storage`` entry-point group.
A domain's ``volume-config`` says, per volume (``root``, ``private``,
``volatile``, ``kernel``), which pool holds it and how it behaves:

- ``rw``: the domain may write to it;
- ``snap_on_start``: at start it is a fresh snapshot of ``source``
  (another domain's volume), its changes dropped at stop;
- ``save_on_stop``: changes are kept when the domain stops;
- ``revisions_to_keep``: how many old copies a save keeps;
- ``ephemeral``: its content is encrypted with a key that dies with
  the domain (volatile volumes).

The configuration strings are kept exactly as read, so qubes.xml round-
trips; :class:`Volume` gives the typed view.
"""

from __future__ import annotations

from typing import Any

from qubes import exc, generation, plugins
from qubes.properties import parse_bool

__all__ = ["Pool", "UnknownDriverPool", "Volume", "Storage", "make_pool"]

#: volume-config attributes, in the order new configurations are written
VOLUME_ATTRIBUTES = (
    "name",
    "pool",
    "vid",
    "revisions_to_keep",
    "rw",
    "save_on_stop",
    "snap_on_start",
    "size",
    "source",
    "ephemeral",
)


_FLAGS = {"True": True, "False": False}


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

    def __init__(self, pool: Pool, config: dict[str, str]) -> None:
        self.pool = pool
        self.config = config
        try:
            self.name = config["name"]
            self.vid = config.get("vid", "")
            self.rw = _flag(config, "rw")
            self.snap_on_start = _flag(config, "snap_on_start")
            self.save_on_stop = _flag(config, "save_on_stop")
            self.ephemeral = _flag(config, "ephemeral")
            self.source = config.get("source") or None
            self.size = int(config.get("size", "0"))
            self.revisions_to_keep = int(config.get("revisions_to_keep", "0"))
        except (KeyError, ValueError) as err:
            raise exc.QubesStorageError(
                f"volume {config.get('name')!r}: invalid configuration: {err}"
            ) from err

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.pool.name}:{self.vid}>"

    #: how the engine sees the volume: ``raw`` or ``qcow2`` images, or a
    #: ``dir`` (a folder, for containers)
    format = "raw"

    @property
    def path(self) -> str:
        """The image file (or folder) the domain's disk is made from.

        :raises QubesUnsupportedError: the pool's driver is not installed
        """
        raise exc.QubesUnsupportedError(
            f"volume {self.name!r}: pool {self.pool.name!r} has driver "
            f"{self.pool.config.get('driver')!r}, which is not installed"
        )

    def verify(self) -> None:
        """Check that the volume can be used to start a domain.

        :raises QubesStorageError: it cannot
        """


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
    described but not used: a backend that needs one raises
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
    """A domain's volumes, built from its ``volume_config`` on first use.

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
        volume: Volume = pool.init_volume(self.vm, config)
        return volume

    def kernel_volume(self) -> Volume | None:
        """The kernel volume of the domain's current kernel, or None.

        The configured kernel volume names the kernel it was made with;
        when the domain's kernel changed since (its own, or its
        template's it follows), this is a volume of the current one.
        """
        kernel = self.vm.kernel
        volume = self.volumes.get("kernel")
        if kernel is None or volume is None:
            return None
        if volume.vid != kernel:
            config = dict(volume.config, vid=kernel)
            volume = volume.pool.init_volume(self.vm, config)
        return volume

    def invalidate(self) -> None:
        """Forget the built volumes (after the configuration changed)."""
        self._volumes = None
        generation.bump()
