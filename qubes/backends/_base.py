"""What every libvirt backend does the same way, written once.

A driver subclass provides its name, default URI, capabilities and the
XML builder (see :class:`._common.BackendBase`); lifecycle, states,
statistics and events are the same libvirt calls for Xen, KVM and LXC
and live here.

A state-changing call runs inside :meth:`LibvirtBackend.mutation`, which
does nothing here; the simulated host uses it to keep its state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid as uuid_module
from collections.abc import Iterator
from typing import Any

import libvirt
import lxml.etree

from qubes import exc
from qubes.backends import (
    DomainStats,
    EventCallback,
    PowerState,
    Subscription,
)
from qubes.backends._common import BackendBase
from qubes.backends._errors import first_line
from qubes.backends._libvirt import Connection
from qubes.backends.simulated import NodeFile

__all__ = ["LibvirtBackend", "POWER_STATES"]

log = logging.getLogger(__name__)

#: libvirt's domain states, in Qubes' words
POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.TRANSIENT,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.HALTING,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.HALTED,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}


class LibvirtBackend(BackendBase):
    """A backend that drives one libvirt connection.

    :param uri: the libvirt URI; by default :attr:`default_uri`
    :param connection: a connection to use instead of opening *uri*
    :param state_file: run as a simulated host whose state is kept in
        this node file (the URI is then the file's)
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        connection: Connection | None = None,
        state_file: NodeFile | None = None,
    ) -> None:
        if state_file is not None:
            uri = state_file.uri
        super().__init__(uri or (connection.uri if connection else None))
        self.state_file = state_file
        self.connection = connection or Connection(
            self.uri,
            before_open=state_file.before_open if state_file else None,
            after_open=state_file.after_open if state_file else None,
        )
        #: domain handles by UUID, so that a state costs one call; each
        #: with the connection it belongs to; None: stopped or undefined
        #: by this backend (see :meth:`_known_halted`)
        self._handles: dict[
            uuid_module.UUID, tuple[Any, libvirt.virDomain | None]
        ] = {}
        #: (connection, network name) known to run
        self._networks_up: set[tuple[Any, str]] = set()
        self._network_lock: tuple[Any, asyncio.Lock] | None = None

    @property
    def simulated(self) -> bool:
        """Whether this is the simulated host (a state file)."""
        return self.state_file is not None

    def describe(self) -> str:
        """One line: backend, URI and engine, for the tools."""
        text = super().describe()
        if self.state_file is not None:
            text += (
                " - simulated host: libvirt's test driver, state kept in "
                + self.state_file.path
            )
        return text

    engine_name = "libvirt"

    @property
    def shared_between_processes(self) -> bool:
        """Whether other processes may drive the same domains: every
        engine but the test driver's private in-process state."""
        return self.state_file is not None or not self.uri.startswith("test:")

    # -- lookups ------------------------------------------------------------

    @contextlib.contextmanager
    def mutation(self) -> Iterator[None]:
        """Wraps every call that changes the engine's state; on a
        simulated host, keeps its state file."""
        if self.state_file is None:
            yield
            return
        with self.state_file.transaction(self.connection):
            yield

    @staticmethod
    def _lookup(conn: libvirt.virConnect, vm: Any) -> libvirt.virDomain:
        return conn.lookupByUUIDString(str(vm.uuid))

    def _has_state(self) -> bool:
        """False for a simulated host that never ran anything (reading
        creates no state file); on a simulated host, reload the state if
        another process changed it."""
        state_file = self.state_file
        if state_file is None:
            return True
        if not self.connection.is_open:
            return state_file.exists()
        state_file.refresh(self.connection)
        return True

    def libvirt_domain(self, vm: Any) -> libvirt.virDomain | None:
        """The ``libvirt.virDomain`` of *vm*, or None when undefined."""
        if not self._has_state():
            return None
        try:
            return self.connection.call(
                "lookup", lambda c: self._lookup(c, vm), vm
            )
        except exc.QubesNoSuchDomainError:
            return None

    def get_uuid(self, vm: Any) -> uuid_module.UUID:
        """The UUID the engine knows *vm* by: its own."""
        dom = self.libvirt_domain(vm)
        if dom is None:
            return uuid_module.UUID(str(vm.uuid))
        return uuid_module.UUID(dom.UUIDString())

    def get_power_state(self, vm: Any) -> PowerState:
        """*vm*'s power state; Halted when the engine does not know it."""
        key = vm.uuid
        if not self._has_state() or self._known_halted(key):
            return PowerState.HALTED
        for _ in range(2):
            dom = self._handle(key) or self.libvirt_domain(vm)
            if dom is None:
                return PowerState.HALTED
            try:
                state = self.connection.call("state", _state_of(dom), vm)
            except exc.QubesNoSuchDomainError:
                # The handle outlived its domain: look it up again.
                self._handles.pop(key, None)
                continue
            self._keep_handle(key, dom)
            return POWER_STATES.get(state, PowerState.TRANSIENT)
        return PowerState.HALTED

    def _handle(self, key: uuid_module.UUID) -> libvirt.virDomain | None:
        entry = self._handles.get(key)
        if entry is None or entry[0] is not self.connection.raw_or_none:
            return None
        return entry[1]

    def _keep_handle(
        self, key: uuid_module.UUID, dom: libvirt.virDomain | None
    ) -> None:
        self._handles[key] = (self.connection.raw_or_none, dom)

    def _known_halted(self, key: uuid_module.UUID) -> bool:
        """Whether this backend itself stopped or undefined domain *key*
        on a connection no one else uses: it is still halted, and asking
        the engine would only raise "no such domain". A caller who
        starts it through the raw connection behind this backend's back
        sees it reported halted until the next start through here."""
        entry = self._handles.get(key)
        return (
            entry is not None
            and entry[1] is None
            and entry[0] is self.connection.raw_or_none
        )

    def _note_halted(self, vm: Any) -> None:
        # Only where no other process can start it again meanwhile.
        if not self.shared_between_processes:
            self._keep_handle(vm.uuid, None)

    def get_runtime_id(self, vm: Any) -> int | None:
        """The engine's id of the running *vm*, or None."""
        dom = self.libvirt_domain(vm)
        if dom is None:
            return None
        ident = self.connection.call("id", lambda c: dom.ID(), vm)
        return None if ident < 0 else int(ident)

    def get_stats(self, vm: Any) -> DomainStats:
        """Memory and CPU figures of a running *vm*.

        :raises QubesVMNotStartedError: it is not running
        """
        dom = self.libvirt_domain(vm)
        if dom is None or not dom.isActive():
            raise exc.QubesVMNotStartedError(vm, "is not running")
        info = self.connection.call("stats", lambda c: dom.info(), vm)
        return DomainStats(
            memory_kib=info[2],
            max_memory_kib=info[1],
            cpu_time_ns=info[4],
            vcpus=info[3],
        )

    def subscribe(self, callback: EventCallback) -> Subscription:
        """Deliver every lifecycle event of the engine to *callback*."""
        return self.connection.subscribe(callback)

    # -- lifecycle ------------------------------------------------------------

    async def start(self, vm: Any) -> None:
        """Start *vm* from :meth:`create_config` as a transient domain:
        the engine knows it while it runs and forgets it when it stops,
        so a failed start or a stop leaves no definition behind. One
        call, one parse of the XML: ``createXML`` costs half of
        ``defineXML`` + ``create`` on libvirt's test driver.

        A persistent definition of the same name and UUID made outside
        (``virsh define``) is replaced, as a define at each start would:
        the domain runs from this XML, transient, and that definition is
        gone.
        """
        xml = self.create_config(vm)
        log.debug("%s: %s", vm.name, xml)
        for name in self.networks(self.spec_of(vm)):
            await self._ensure_network(name)

        def create(conn: libvirt.virConnect) -> libvirt.virDomain:
            dom = conn.createXML(xml, 0)
            _make_transient(dom)
            return dom

        key = vm.uuid
        self._handles.pop(key, None)
        with self.mutation():
            dom = await self.connection.run("create", create, vm)
        self._keep_handle(key, dom)
        self._new_qubesdb(vm)

    async def _ensure_network(self, name: str) -> None:
        """Define and start network *name* unless it runs (once per
        connection)."""
        conn = self.connection.raw_or_none
        if conn is not None and (conn, name) in self._networks_up:
            return
        # Domains that start together on one netvm make its network once.
        loop = asyncio.get_running_loop()
        if self._network_lock is None or self._network_lock[0] is not loop:
            self._network_lock = (loop, asyncio.Lock())
        async with self._network_lock[1]:
            if (self.connection.raw_or_none, name) not in self._networks_up:
                await self._make_network(name)

    async def _make_network(self, name: str) -> None:
        def ensure(conn: libvirt.virConnect) -> None:
            try:
                network = conn.networkLookupByName(name)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_NETWORK:
                    raise
                network = conn.networkDefineXML(network_xml(name))
            if not network.isActive():
                network.create()

        with self.mutation():
            await self.connection.run("network", ensure)
        self._networks_up.add((self.connection.raw_or_none, name))

    async def _domain_call(self, op: str, vm: Any, method: str) -> None:
        def act(conn: libvirt.virConnect) -> None:
            getattr(self._lookup(conn, vm), method)()

        try:
            with self.mutation():
                await self.connection.run(op, act, vm)
        except exc.QubesNoSuchDomainError:
            raise exc.QubesVMNotStartedError(vm, "is not running") from None

    async def kill(self, vm: Any) -> None:
        """Stop *vm* at once.

        :raises QubesVMNotStartedError: it is not running
        """
        await self._domain_call("destroy", vm, "destroy")
        self._note_halted(vm)

    async def shutdown(self, vm: Any) -> None:
        """Ask *vm*'s guest to shut down; returns once asked."""
        await self._domain_call("shutdown", vm, "shutdown")

    async def pause(self, vm: Any) -> None:
        """Freeze *vm*'s vCPUs."""
        await self._domain_call("suspend", vm, "suspend")

    async def unpause(self, vm: Any) -> None:
        """Let a paused *vm* run again."""
        await self._domain_call("resume", vm, "resume")

    async def undefine(self, vm: Any) -> None:
        """Forget *vm*'s definition; a no-op when there is none."""

        def act(conn: libvirt.virConnect) -> None:
            _undefine(self._lookup(conn, vm))

        self._handles.pop(vm.uuid, None)
        try:
            with self.mutation():
                await self.connection.run("undefine", act, vm)
        except exc.QubesNoSuchDomainError:
            pass
        self._note_halted(vm)

    def close(self) -> None:
        """Close the engine connection; it reopens on next use."""
        self._handles.clear()
        self.connection.close()


def bridge_name(network: str) -> str:
    """The host bridge of network *network*: named after a hash of it,
    since a bridge's name is at most 15 bytes."""
    return "qbr" + hashlib.sha1(network.encode()).hexdigest()[:10]


def network_xml(name: str) -> str:
    """An isolated libvirt network: no address and no forwarding on the
    host's side; the netvm is the gateway."""
    bridge = bridge_name(name)
    network = lxml.etree.Element("network")
    lxml.etree.SubElement(network, "name").text = name
    lxml.etree.SubElement(
        network, "bridge", {"name": bridge, "stp": "off", "delay": "0"}
    )
    return str(lxml.etree.tostring(network, encoding="unicode"))


def _state_of(dom: libvirt.virDomain) -> Any:
    return lambda conn: dom.state()[0]


def _make_transient(dom: libvirt.virDomain) -> None:
    # Undefining a running domain leaves it running, transient. Its
    # NVRAM file (UEFI) is in use: kept, where the driver knows the flag.
    # Where the engine refuses both, the domain runs all the same, from
    # this XML, and the definition made outside stays: logged, not
    # raised, for the start did succeed.
    try:
        if not dom.isPersistent():
            return
        try:
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM)
        except libvirt.libvirtError:
            dom.undefine()
    except libvirt.libvirtError as err:
        log.warning(
            "%s: the definition made outside stays: %s",
            dom.name(),
            first_line(err),
        )


def _undefine(dom: libvirt.virDomain) -> None:
    # UEFI domains keep an NVRAM file that a plain undefine refuses to
    # leave behind; not every driver knows the flag.
    try:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError:
        dom.undefine()
