"""The network role: which domain gives this one its network, and how.

A domain that ``provides_network`` (sys-net, sys-firewall) may be the
``netvm`` of others. Addresses follow the Qubes scheme: a domain gets
10.137.x.y from its qid (10.138.x.y from its dispid for a DispVM), its
netvm is its gateway, and 10.139.1.1 and 10.139.1.2 are the virtual DNS
servers that the netvm forwards.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from qubes import exc
from qubes.events import handler
from qubes.properties import Property, VMProperty

__all__ = ["NetVMMixin", "netvm_chain", "setter_netvm"]

DNS_SERVERS = ("10.139.1.1", "10.139.1.2")
NETMASK = "255.255.255.255"

_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")


def netvm_chain(vm: Any) -> list[Any]:
    """The domains *vm* reaches the network through, nearest first.

    :raises QubesPropertyValueError: the chain loops
    """
    chain: list[Any] = []
    seen = {id(vm)}
    netvm = vm.netvm
    while netvm is not None:
        if id(netvm) in seen:
            names = " -> ".join([vm.name] + [d.name for d in chain])
            raise exc.QubesPropertyValueError(
                f"netvm loop: {names} -> {netvm.name}",
                value=vm.netvm,
                domain=vm.name,
                prop="netvm",
            )
        seen.add(id(netvm))
        chain.append(netvm)
        netvm = getattr(netvm, "netvm", None)
    return chain


def _default_netvm(vm: Any) -> Any:
    # The global default_netvm cannot serve the domains it depends on:
    # sys-net itself, or the sys-net under a default sys-firewall.
    netvm = vm.app.default_netvm
    probe = netvm
    seen: set[int] = set()
    while probe is not None and id(probe) not in seen:
        if probe is vm:
            return None
        seen.add(id(probe))
        probe = probe._property_values.get("netvm")
    return netvm


def setter_netvm(vm: Any, prop: Property, value: Any) -> Any:
    """Validate a netvm: it provides network and makes no loop."""
    if value is None:
        return None
    if not getattr(value, "provides_network", False):
        raise exc.QubesPropertyValueError(
            f"{value.name!r} does not provide network", value=value
        )
    if value is vm:
        raise exc.QubesPropertyValueError(
            "a domain cannot be its own netvm", value=value
        )
    # While the store loads, other domains' netvm may still read as
    # their defaults, so a loop check would see loops that are not
    # there; the store checks every chain once all are loaded.
    if vm.events_enabled:
        probe = value
        while probe is not None:
            if probe is vm:
                raise exc.QubesPropertyValueError(
                    f"netvm loop through {value.name!r}", value=value
                )
            probe = getattr(probe, "netvm", None)
    return value


def _setter_provides_network(vm: Any, prop: Property, value: bool) -> bool:
    if not value and vm.events_enabled:
        users = sorted(d.name for d in vm.connected_vms)
        if vm.app.default_netvm is vm:
            users.append("global default_netvm")
        if users:
            raise exc.QubesPropertyValueError(
                "still the netvm of " + ", ".join(users), value=value
            )
    return value


def _setter_ip(vm: Any, prop: Property, value: str) -> str:
    return str(ipaddress.IPv4Address(value))


def _setter_mac(vm: Any, prop: Property, value: str) -> str:
    value = value.lower()
    if not _MAC.fullmatch(value):
        raise exc.QubesPropertyValueError(
            f"invalid MAC address {value!r}", value=value
        )
    return value


def _default_ip(vm: Any) -> str | None:
    if not vm.is_networked():
        return None
    number = vm.ip_number
    return f"{vm.ip_prefix}.{(number >> 8) & 0xFF}.{number & 0xFF}"


def _default_mac(vm: Any) -> str:
    # Unique per qid, so that domains can share a bridge (KVM, LXC);
    # 00:16:3e is Xen's vendor prefix.
    qid = vm.qid
    return f"00:16:3e:5e:{(qid >> 8) & 0xFF:02x}:{qid & 0xFF:02x}"


class NetVMMixin:
    """Network properties; mixed into :class:`~qubes.vm.qubesvm.QubesVM`
    subclasses."""

    netvm = VMProperty(
        allow_none=True,
        setter=setter_netvm,
        default=_default_netvm,
        doc="Domain that gives this one its network; empty: none.",
    )
    provides_network = Property(
        type=bool,
        setter=_setter_provides_network,
        default=False,
        doc="Whether other domains may use this one as their netvm.",
    )
    ip = Property(
        type=str,
        setter=_setter_ip,
        default=_default_ip,
        doc="IPv4 address of this domain.",
    )
    mac = Property(
        type=str,
        setter=_setter_mac,
        default=_default_mac,
        doc="MAC address of the domain's network interface.",
    )

    #: first two bytes of this class's addresses
    ip_prefix = "10.137"

    @property
    def ip_number(self) -> int:
        """The number the last two bytes of the address come from."""
        return int(self.qid)  # type: ignore[attr-defined]

    def is_networked(self) -> bool:
        """Whether this domain has a network: its own or a netvm's."""
        return bool(self.provides_network) or self.netvm is not None

    @property
    def visible_ip(self) -> str | None:
        """The address this domain is seen with."""
        return self.ip  # type: ignore[no-any-return]

    @property
    def gateway(self) -> str | None:
        """The gateway this domain offers to others (its own address)."""
        return self.visible_ip if self.provides_network else None

    @property
    def visible_gateway(self) -> str | None:
        """The gateway this domain uses: its netvm's address."""
        netvm = self.netvm
        return None if netvm is None else netvm.gateway

    @property
    def netmask(self) -> str | None:
        """Netmask of the domain's address (a point-to-point link)."""
        return NETMASK if self.is_networked() else None

    @property
    def dns(self) -> tuple[str, str] | None:
        """The virtual DNS servers, when networked."""
        return DNS_SERVERS if self.is_networked() else None

    @handler("domain-pre-shutdown")
    def _keep_clients_connected(
        self, event: str, force: bool = False, **kwargs: Any
    ) -> None:
        # Shutting down a netvm under running clients cuts them off.
        if force:
            return
        running = [vm.name for vm in self.connected_vms if vm.is_running()]
        if running:
            raise exc.QubesVMError(
                self,
                "is the netvm of running domains: "
                + ", ".join(sorted(running))
                + "; stop them first, or force the shutdown",
            )

    @property
    def connected_vms(self) -> list[Any]:
        """Domains whose netvm is this one (explicitly or by default)."""
        app = self.app  # type: ignore[attr-defined]
        return [vm for vm in app.domains if getattr(vm, "netvm", None) is self]
