"""QubesVM: the properties and actions every real domain has.

This module is written for security reviewers. It uses no metaclass and
no dynamic attribute: each property below is declared once, with its
default spelled out in a named function next to it. Where a domain has
a template (AppVM, DispVM), many defaults follow the rule "the
template's value first": the template's effective value is taken, and
only a domain without a template falls back to the global default.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Callable
from typing import Any

from qubes import exc, generation
from qubes.events import handler
from qubes.locks import domain_lock
from qubes.properties import (
    MAX_MEMORY,
    MAX_SECONDS,
    MAX_VCPUS,
    Property,
    VMProperty,
    bounded,
)
from qubes.vm import BaseVM, volumes
from qubes.vm.mix.dvmtemplate import setter_dispvm
from qubes.vm.qubesdb import qubesdb_entries, random_seed

__all__ = ["QubesVM", "VIRT_MODES", "template_first"]

#: Xen's virtualisation modes; other backends map them onto their own.
VIRT_MODES = ("pv", "pvh", "hvm")

#: Kernel options used when no template gives any: PCI passthrough needs
#: a larger software IOMMU bounce buffer than the default guest.
DEFAULT_KERNELOPTS = "swiotlb=2048"
DEFAULT_KERNELOPTS_PCI = "iommu=soft swiotlb=8192"

_KERNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def template_first(
    name: str, fallback: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """A default: the template's value of *name*, else ``fallback(vm)``."""

    def default(vm: Any) -> Any:
        template = getattr(vm, "template", None)
        if template is not None:
            return getattr(template, name)
        return fallback(vm)

    default.__name__ = f"default_{name}"
    return default


def _has_pci(vm: Any) -> bool:
    return bool(len(vm.devices["pci"]))


def _setter_virt_mode(vm: Any, prop: Property, value: str) -> str:
    value = value.lower()
    if value not in VIRT_MODES:
        raise exc.QubesPropertyValueError(
            f"{value!r} is not one of {', '.join(VIRT_MODES)}", value=value
        )
    return value


def _setter_kernel(vm: Any, prop: Property, value: Any) -> str | None:
    # The kernel is a folder name under the kernel pool: no path parts.
    if value is None or value == "":
        return None
    value = str(value)
    if not _KERNEL.fullmatch(value):
        raise exc.QubesPropertyValueError(
            f"invalid kernel version {value!r}", value=value
        )
    return str(value)


def _setter_optional_int(vm: Any, prop: Property, value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _default_maxmem(vm: Any) -> int:
    # Memory balancing cannot move memory of a domain with PCI devices:
    # their DMA needs fixed memory. 0 means "fixed at `memory`".
    if _has_pci(vm):
        return 0
    template = getattr(vm, "template", None)
    if template is not None:
        return int(template.maxmem)
    half_host = vm.app.host.memory_total // 1024 // 2
    return int(min(vm.app.default_maxmem, half_host or vm.app.default_maxmem))


def _default_virt_mode(vm: Any) -> str:
    # PCI passthrough works only for HVM domains.
    if _has_pci(vm):
        return "hvm"
    template = getattr(vm, "template", None)
    if template is not None:
        return str(template.virt_mode)
    return "pvh"


def _default_kernelopts(vm: Any) -> str:
    if _has_pci(vm):
        return DEFAULT_KERNELOPTS_PCI
    template = getattr(vm, "template", None)
    if template is not None:
        return str(template.kernelopts)
    return DEFAULT_KERNELOPTS


class QubesVM(BaseVM):
    """A domain that the backend runs: everything but dom0.

    Lifecycle actions (start, shutdown, kill, pause) are added by the
    backend layer; this class declares what a domain is.
    """

    memory = Property(
        type=int,
        setter=bounded(1, MAX_MEMORY),
        default=template_first("memory", lambda vm: vm.app.default_memory),
        doc="Memory at start, MiB.",
    )
    maxmem = Property(
        type=int,
        setter=bounded(0, MAX_MEMORY),
        default=_default_maxmem,
        doc="Memory the domain may balloon up to, MiB; 0 for fixed.",
    )
    vcpus = Property(
        type=int,
        setter=bounded(1, MAX_VCPUS),
        default=template_first("vcpus", lambda vm: vm.app.default_vcpus),
        doc="Number of virtual CPUs.",
    )
    virt_mode = Property(
        type=str,
        setter=_setter_virt_mode,
        default=_default_virt_mode,
        doc="Virtualisation mode: pv, pvh or hvm.",
    )
    kernel = Property(
        setter=_setter_kernel,
        default=template_first("kernel", lambda vm: vm.app.default_kernel),
        doc="Kernel version from the kernel pool; empty: the domain's own.",
    )
    kernelopts = Property(
        type=str,
        default=_default_kernelopts,
        doc="Kernel command line additions.",
    )
    debug = Property(
        type=bool, default=False, doc="Debug mode: console and verbose boot."
    )
    installed_by_rpm = Property(
        type=bool, default=False, doc="Installed by a package, not by hand."
    )
    default_user = Property(
        type=str,
        default=template_first("default_user", lambda vm: "user"),
        doc="User that qrexec commands run as.",
    )
    qrexec_timeout = Property(
        type=int,
        setter=bounded(1, MAX_SECONDS),
        default=template_first(
            "qrexec_timeout", lambda vm: vm.app.default_qrexec_timeout
        ),
        doc="Seconds to wait for the guest agent at start.",
    )
    shutdown_timeout = Property(
        type=int,
        setter=bounded(1, MAX_SECONDS),
        default=template_first(
            "shutdown_timeout", lambda vm: vm.app.default_shutdown_timeout
        ),
        doc="Seconds a clean shutdown may take.",
    )
    autostart = Property(type=bool, default=False, doc="Start with the host.")
    include_in_backups = Property(
        type=bool, default=True, doc="Included in backups by default."
    )
    backup_timestamp = Property(
        setter=_setter_optional_int,
        default=None,
        doc="Time of the last backup, seconds since the epoch.",
    )
    keyboard_layout = Property(
        type=str,
        default=lambda vm: vm.app.default_keyboard_layout,
        doc="Keyboard layout passed to the guest.",
    )
    default_dispvm = VMProperty(
        allow_none=True,
        setter=setter_dispvm,
        default=lambda vm: vm.app.default_dispvm,
        doc="Disposable template for DispVMs started from this domain.",
    )
    management_dispvm = VMProperty(
        allow_none=True,
        setter=setter_dispvm,
        default=lambda vm: vm.app.management_dispvm,
        doc="Disposable template used to manage this domain.",
    )
    guivm = VMProperty(
        allow_none=True,
        default=lambda vm: vm.app.default_guivm,
        doc="Domain that shows this domain's windows.",
    )
    audiovm = VMProperty(
        allow_none=True,
        default=lambda vm: vm.app.default_audiovm,
        doc="Domain that plays this domain's sound.",
    )

    @handler("property-pre-set:template", "property-pre-reset:template")
    def _template_changes_only_when_halted(
        self, event: str, **kwargs: Any
    ) -> None:
        if not self.is_halted():
            raise exc.QubesVMNotHaltedError(
                self, "cannot change its template while running"
            )

    @handler("property-set:template", "property-reset:template")
    def _volumes_follow_the_template(self, event: str, **kwargs: Any) -> None:
        # Snapshot volumes are made from the template's: name the new
        # template's as their source, and qubes.xml with it.
        fresh = self.default_volume_config()
        for name, config in self.volume_config.items():
            new = fresh.get(name)
            if (
                new
                and config.get("snap_on_start") == "True"
                and "source" in new
            ):
                config["source"] = new["source"]
        self.storage.invalidate()

    def default_volume_config(self) -> dict[str, dict[str, str]]:
        """The volume configuration of a new domain of this class."""
        return {}

    @handler("property-set:kernel", "property-reset:kernel")
    def _kernel_volume_follows(self, event: str, **kwargs: Any) -> None:
        # The kernel volume names the kernel, as on Qubes: keep it so,
        # and qubes.xml with it; a domain made while it had no kernel
        # gets its kernel volume now.
        config = self.volume_config.get("kernel")
        kernel = self.kernel
        if not kernel or (config is not None and config.get("vid") == kernel):
            return
        if config is None:
            made = volumes.kernel_volume(self)
            if made is None:
                return
            self.volume_config["kernel"] = made
        else:
            config["vid"] = kernel
        self.storage.invalidate()

    # -- state ----------------------------------------------------------
    #
    # Nothing here talks to a hypervisor directly: every action goes to
    # the store's backend (qubes.backends.Backend).

    #: true from the engine's start until domain-start has fired
    _starting = False
    #: whether this run's stop was handled; None: not known (a domain
    #: found running when the store was loaded)
    _stop_handled: bool | None = None
    _startup_lock: asyncio.Lock | None = None
    #: done when the stop being handled is handled
    _stopping: asyncio.Future[None] | None = None

    def get_power_state(self) -> str:
        """Halted, Transient, Running, Paused, Halting, Dying, Crashed or
        Suspended; Transient while a start is under way."""
        if self._starting:
            return "Transient"
        return str(self.app.backend.get_power_state(self))

    def is_running(self) -> bool:
        """Whether the domain is started (running, paused, halting...)."""
        return self.get_power_state() != "Halted"

    def is_halted(self) -> bool:
        """Whether the domain is halted."""
        return self.get_power_state() == "Halted"

    def is_paused(self) -> bool:
        """Whether the domain is paused."""
        return self.get_power_state() == "Paused"

    @property
    def libvirt_domain(self) -> Any:
        """The engine's domain object, or None when it is not defined."""
        return self.app.backend.libvirt_domain(self)

    @property
    def xid(self) -> int:
        """The engine's runtime id (Xen's domid); -1 when not running."""
        runtime_id = self.app.backend.get_runtime_id(self)
        return -1 if runtime_id is None else int(runtime_id)

    def create_config_file(self) -> str:
        """The libvirt domain XML the backend would define at start."""
        return str(self.app.backend.create_config(self))

    @property
    def startup_lock(self) -> asyncio.Lock:
        """Held while the domain starts."""
        if self._startup_lock is None:
            self._startup_lock = asyncio.Lock()
        return self._startup_lock

    # -- start ------------------------------------------------------------

    async def start(self) -> QubesVM:
        """Start the domain, its netvm chain first.

        Fires ``domain-pre-start`` (a handler may veto), then
        ``domain-spawn`` once the engine runs it and ``domain-start``
        once its QubesDB is filled; or ``domain-start-failed``. A failed
        start leaves nothing behind: no definition in the engine.

        :raises QubesVMAlreadyRunningError: it is not halted
        """
        async with self.startup_lock, self._process_lock():
            if not self.is_halted():
                raise exc.QubesVMAlreadyRunningError(self, self._not_halted())
            await self._start_halted()
        return self

    def _not_halted(self) -> str:
        state = self.get_power_state()
        if state == "Paused":
            return "is paused; qvm-unpause it"
        if state == "Running":
            return "is already running"
        return f"is not halted (it is {state})"

    async def start_if_halted(self) -> None:
        """Start the domain unless it is started already."""
        # A running domain (a netvm, for each of its clients' starts)
        # needs no lock; one that is starting is waited for below.
        if self.get_power_state() == "Running":
            return
        async with self.startup_lock, self._process_lock():
            if self.is_halted():
                await self._start_halted()

    def _process_lock(self) -> Any:
        # Other processes may start this domain on the same engine (the
        # tools, on a real engine or the simulated host): one at a time.
        if not self.app.backend.shared_between_processes:
            return contextlib.nullcontext()
        return domain_lock(self.app.base_dir, self)

    async def _start_halted(self) -> None:
        self.app.watch_engine_events()
        # The domain's XML first (kept for the start itself): a domain
        # the backend cannot run leaves its netvm as it was.
        self.app.backend.create_config(self)
        netvm = getattr(self, "netvm", None)
        if netvm is not None:
            await netvm.start_if_halted()
        await self.fire_event_async("domain-pre-start", pre_event=True)
        self.log.info("starting")
        self._starting = True
        volumes_started = engine_started = False
        try:
            volumes_started = await self._start_volumes()
            await self.app.backend.start(self)
            engine_started = True
            self._stop_handled = False
            await self.fire_event_async("domain-spawn")
            self._fill_qubesdb()
            self._starting = False
            await self.fire_event_async("domain-start")
        except BaseException as err:
            self._starting = False
            await self._undo_start(volumes_started, engine_started)
            if isinstance(err, exc.QubesException):
                err.locate(domain=self.name)
            self.log.info("start failed: %s", err)
            await self.fire_event_async("domain-start-failed", reason=str(err))
            raise
        self.log.info("started")

    def _real_disks(self) -> bool:
        # A simulated host has no disks: its volumes are only described.
        return not self.app.backend.capabilities.simulated

    async def _start_volumes(self) -> bool:
        """Check and prepare the volumes; whether there was anything to
        prepare."""
        if not self._real_disks():
            return False
        await self.storage.start(self.app.backend.unused_volumes)
        return True

    async def _undo_start(
        self, volumes_started: bool, engine_started: bool
    ) -> None:
        # This undoing is the run's stop: the engine's own stop event
        # must not release the volumes a second time. What the engine
        # runs is undone only if this start made it run: a start that
        # failed because another process had started the domain leaves
        # that run alone.
        self._stop_handled = True
        backend = self.app.backend
        try:
            if engine_started:
                with contextlib.suppress(exc.QubesVMNotStartedError):
                    await backend.kill(self)
                await backend.undefine(self)
        finally:
            backend.forget(self)
            if volumes_started:
                await self.storage.stop(self.app.backend.unused_volumes)

    async def create_on_disk(self) -> None:
        """Make the volumes of a new domain (nothing on a simulated
        host); on failure, none is left."""
        if self._real_disks():
            await self.storage.create()

    async def remove_from_disk(self) -> None:
        """Remove what a domain being removed leaves: its definition in
        the engine and its volumes.

        :raises QubesVMNotHaltedError: it is not halted
        """
        if not self.is_halted():
            raise exc.QubesVMNotHaltedError(self, "is running; stop it first")
        await self.app.backend.undefine(self)
        if self._real_disks():
            await self.storage.remove()

    #: (model generation, entries) of the last start
    _qdb_entries: tuple[int, dict[str, str]] | None = None

    def _fill_qubesdb(self) -> None:
        qdb = self.qdb
        if qdb is None:
            return
        # The entries follow from the model: reuse them while it has not
        # changed. The random seed is fresh at every start.
        cached = self._qdb_entries
        if cached is None or cached[0] != generation.current():
            cached = (generation.current(), qubesdb_entries(self))
            self._qdb_entries = cached
        qdb.write_many(cached[1])
        qdb.write("/qubes-random-seed", random_seed())
        self.start_qdb_watch()
        self.fire_event("domain-qdb-create")

    # -- stop, pause --------------------------------------------------------

    async def kill(self) -> QubesVM:
        """Stop the domain at once; fires ``domain-stopped`` then
        ``domain-shutdown``.

        :raises QubesVMNotStartedError: it is halted
        """
        if self.is_halted():
            raise exc.QubesVMNotStartedError(self, "is not running")
        self.app.watch_engine_events()
        await self.app.backend.kill(self)
        await self._handle_stop()
        return self

    async def shutdown(
        self, force: bool = False, wait: bool = False, timeout: float = 0
    ) -> QubesVM:
        """Ask the guest to shut down.

        Fires ``domain-pre-shutdown`` (a handler may veto: a netvm whose
        connected domains run refuses unless *force*).

        :param wait: return only once it is halted
        :param timeout: seconds to wait; 0 means ``shutdown_timeout``
        :raises QubesVMNotStartedError: it is halted
        :raises QubesVMShutdownTimeoutError: it did not halt in time
        """
        if self.is_halted():
            raise exc.QubesVMNotStartedError(self, "is not running")
        self.app.watch_engine_events()
        await self.fire_event_async(
            "domain-pre-shutdown", pre_event=True, force=force
        )
        await self.app.backend.shutdown(self)
        if wait:
            await self._wait_halted(timeout or self.shutdown_timeout)
        return self

    async def _wait_halted(self, timeout: float) -> None:
        # Engine events are the fast path; polling catches an engine
        # whose event was lost.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.is_halted():
            if loop.time() >= deadline:
                raise exc.QubesVMShutdownTimeoutError(
                    self, f"did not shut down within {timeout:g} s"
                )
            await asyncio.sleep(0.05)
        await self._handle_stop()

    async def pause(self) -> QubesVM:
        """Freeze the domain; fires ``domain-paused``.

        :raises QubesVMNotRunningError: it is not running
        """
        state = self.get_power_state()
        if state == "Paused":
            raise exc.QubesVMError(self, "is already paused")
        if state != "Running":
            raise exc.QubesVMNotRunningError(self, "is not running")
        await self.app.backend.pause(self)
        await self.fire_event_async("domain-paused")
        return self

    async def unpause(self) -> QubesVM:
        """Let a paused domain run; fires ``domain-unpaused``.

        :raises QubesVMNotPausedError: it is not paused
        """
        if self.get_power_state() != "Paused":
            raise exc.QubesVMNotPausedError(self, "is not paused")
        await self.app.backend.unpause(self)
        await self.fire_event_async("domain-unpaused")
        return self

    def on_engine_event(self, event: str) -> Any:
        """The coroutine to run for an engine event, or None.

        A domain that stopped on its own (powered off, crashed, killed
        from outside) is noticed here.
        """
        if event in ("stopped", "crashed") and self._stop_handled is not True:
            return self._handle_stop_if_halted()
        return None

    async def _handle_stop_if_halted(self) -> None:
        if self.is_halted():
            await self._handle_stop()

    async def _handle_stop(self) -> None:
        """Fire ``domain-stopped``, release what the run held, fire
        ``domain-shutdown``; once per run. A second caller (our kill and
        the engine's stop event both notice a stop) waits for the
        first to finish."""
        if self._stop_handled is True:
            if self._stopping is not None:
                await asyncio.shield(self._stopping)
            return
        self._stop_handled = True
        self._stopping = asyncio.get_running_loop().create_future()
        try:
            self.log.info("stopped")
            await self.fire_event_async("domain-stopped")
            self.app.backend.forget(self)
            try:
                if self._real_disks():
                    await self.storage.stop(self.app.backend.unused_volumes)
            finally:
                await self.fire_event_async("domain-shutdown")
        finally:
            self._stopping.set_result(None)
            self._stopping = None

    # -- QubesDB ------------------------------------------------------------

    @property
    def qdb(self) -> Any:
        """The running domain's QubesDB (:mod:`qubes.qdb`), or None."""
        return self.app.backend.qubesdb(self)

    def watch_qdb_path(self, path: str) -> None:
        """Fire ``domain-qdb-change:PATH`` when *path* (or, ending in
        ``/``, anything below it) changes in the domain's QubesDB."""
        watched = self.__dict__.setdefault("_qdb_watched", [])
        if path not in watched:
            watched.append(path)
            qdb = self.qdb
            if qdb is not None:
                qdb.watch(path, self._qdb_changed(path))

    def start_qdb_watch(self) -> None:
        """Watch every path given to :meth:`watch_qdb_path` in the
        QubesDB of this run."""
        qdb = self.qdb
        if qdb is None:
            return
        for path in self.__dict__.get("_qdb_watched", ()):
            qdb.watch(path, self._qdb_changed(path))

    def _qdb_changed(self, watched: str) -> Callable[[str], None]:
        def changed(path: str) -> None:
            self.fire_event("domain-qdb-change:" + watched, path=path)

        return changed

    @property
    def updateable(self) -> bool:
        """Whether the root volume's changes are kept at stop."""
        root = self.volume_config.get("root", {})
        return root.get("save_on_stop") == "True"

    @property
    def icon(self) -> str:
        """The icon name of this domain."""
        return str(self.label.icon)

    @property
    def dir_path(self) -> str:
        """The domain's folder under the store's base folder."""
        return os.path.join(self.app.base_dir, self.dir_path_prefix, self.name)

    #: folder under the base folder that holds domains of this class
    dir_path_prefix = "appvms"
