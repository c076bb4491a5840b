"""The Backend protocol: how domains are run, whatever the hypervisor.

Domain classes (:mod:`qubes.vm`) talk to a hypervisor only through an
object that follows :class:`Backend`. A backend chooses the libvirt XML
dialect and the engine's rules (``xen``, ``kvm``, ``lxc``); the libvirt
URI chooses where it runs (``xen:///system``, ``qemu:///system``,
``lxc:///system``, a remote ``qemu+ssh://host/system``, or libvirt's
in-process ``test:///`` driver). Backends are found by name in the
``qubes.backends`` entry-point group, so a fourth one is a separate
package.

What a backend cannot do, it refuses with
:class:`~qubes.exc.QubesUnsupportedError`, never silently.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from qubes import exc, plugins

__all__ = [
    "Backend",
    "Capabilities",
    "DomainStats",
    "LifecycleEvent",
    "PowerState",
    "Subscription",
    "get_backend",
    "backend_names",
]


class PowerState(enum.StrEnum):
    """A domain's power state, in Qubes' words."""

    HALTED = "Halted"
    TRANSIENT = "Transient"
    RUNNING = "Running"
    PAUSED = "Paused"
    HALTING = "Halting"
    DYING = "Dying"
    CRASHED = "Crashed"
    SUSPENDED = "Suspended"


class LifecycleEvent(enum.StrEnum):
    """What the engine reports about a domain, outside any request."""

    DEFINED = "defined"
    UNDEFINED = "undefined"
    STARTED = "started"
    SUSPENDED = "suspended"
    RESUMED = "resumed"
    STOPPED = "stopped"
    SHUTDOWN = "shutdown"
    CRASHED = "crashed"
    PMSUSPENDED = "pmsuspended"


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do on its engine.

    :param domain_type: the libvirt ``<domain type=...>`` it writes
    :param virt_modes: the ``virt_mode`` values it accepts
    :param memory_hotplug: whether memory can be added to a running
        domain (``maxMemory`` slots)
    :param pci_passthrough: whether PCI devices can be assigned
    :param networking: how a domain is wired to its netvm, in words
    :param simulated: nothing really runs, and volumes are described
        but not created or checked (the embedded simulated host)
    """

    domain_type: str
    virt_modes: frozenset[str]
    memory_hotplug: bool
    pci_passthrough: bool
    networking: str
    simulated: bool = False


@dataclass(frozen=True)
class DomainStats:
    """Resource figures of a running domain.

    :param memory_kib: memory the domain has now
    :param max_memory_kib: memory it may grow to
    :param cpu_time_ns: CPU time used since it started
    :param vcpus: virtual CPUs
    """

    memory_kib: int
    max_memory_kib: int
    cpu_time_ns: int
    vcpus: int


#: called with the UUID string of the domain and what happened to it
EventCallback = Callable[[str, LifecycleEvent], None]


class Subscription(Protocol):
    """A registered lifecycle-event callback."""

    def cancel(self) -> None:
        """Stop delivering events to the callback."""


@runtime_checkable
class Backend(Protocol):
    """What the domain classes need from a hypervisor driver.

    ``vm`` arguments are :class:`qubes.vm.qubesvm.QubesVM` objects: a
    backend reads their properties and volumes, never the other way
    round. Blocking engine calls happen inside the coroutines; a caller
    never waits on libvirt outside ``await``.
    """

    #: the name it is registered under (``xen``, ``kvm``, ``lxc``)
    name: str
    #: the libvirt URI it drives
    uri: str
    #: names of volumes its domains do without (a container's volatile
    #: and kernel volumes): they are not checked or made at start
    unused_volumes: frozenset[str]

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do on its engine."""

    def create_config(self, vm: Any) -> str:
        """The libvirt domain XML that starting *vm* would define.

        :raises QubesUnsupportedError: the domain needs what the engine
            cannot do (a virt mode, PCI passthrough...)
        """

    async def start(self, vm: Any) -> None:
        """Start *vm* from :meth:`create_config`; the engine may know the
        domain only while it runs (libvirt's drivers start it transient).

        :raises QubesVMAlreadyRunningError: it runs already
        """

    async def kill(self, vm: Any) -> None:
        """Stop *vm* at once, as pulling the plug would.

        :raises QubesVMNotStartedError: it is not running
        """

    async def shutdown(self, vm: Any) -> None:
        """Ask *vm*'s guest to shut down; returns once asked.

        :raises QubesVMNotRunningError: it is not running
        """

    async def pause(self, vm: Any) -> None:
        """Freeze *vm*'s vCPUs."""

    async def unpause(self, vm: Any) -> None:
        """Let a paused *vm* run again."""

    async def undefine(self, vm: Any) -> None:
        """Forget *vm*'s definition in the engine; a no-op if none."""

    def get_uuid(self, vm: Any) -> Any:
        """The UUID the engine knows *vm* by (a :class:`uuid.UUID`)."""

    def get_power_state(self, vm: Any) -> PowerState:
        """*vm*'s power state; Halted when the engine does not know it."""

    def get_runtime_id(self, vm: Any) -> int | None:
        """The engine's id of the running *vm* (Xen's domid), or None."""

    def get_stats(self, vm: Any) -> DomainStats:
        """Memory and CPU figures of a running *vm*.

        :raises QubesVMNotStartedError: it is not running
        """

    def libvirt_domain(self, vm: Any) -> Any:
        """The ``libvirt.virDomain`` of *vm*, or None when undefined."""

    def subscribe(self, callback: EventCallback) -> Subscription:
        """Deliver every lifecycle event of the engine to *callback*."""

    def qubesdb(self, vm: Any) -> Any:
        """The QubesDB of a running *vm* (see :mod:`qubes.qdb`)."""

    def describe(self) -> str:
        """One line: backend, URI and engine, for the tools."""

    @property
    def shared_between_processes(self) -> bool:
        """Whether other processes may drive the same domains (and a
        start must lock out theirs)."""

    def close(self) -> None:
        """Close the engine connection; it reopens on next use."""


def backend_names() -> list[str]:
    """Every backend name that can be asked for."""
    return plugins.names(plugins.GROUP_BACKENDS)


def get_backend(name: str, uri: str | None = None, **options: Any) -> Any:
    """The backend registered as *name*, driving *uri*.

    :param uri: the libvirt URI; by default the backend's own
        (``xen:///system``, ``qemu:///system``, ``lxc:///system``)
    :param options: backend-specific settings
    :raises QubesBackendNotFoundError: no backend has that name
    """
    try:
        cls = plugins.load(plugins.GROUP_BACKENDS, name)
    except LookupError:
        raise exc.QubesBackendNotFoundError(
            f"no backend named {name!r} (known: {', '.join(backend_names())})"
        ) from None
    return cls(uri=uri, **options)
