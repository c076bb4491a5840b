"""The LXC backend: containers through libvirt, ``lxc:///system``."""

from __future__ import annotations

from typing import Any

from qubes.backends import Capabilities
from qubes.backends._base import LibvirtBackend
from qubes.backends.lxc import _ownership, _xml
from qubes.backends.spec import DomainSpec

__all__ = ["LXCBackend", "make_backend"]


def make_backend(uri: str | None = None, **options: Any) -> Any:
    """The LXC backend for *uri*: on liblxc for ``liblxc:///PATH``, on
    libvirt's LXC driver otherwise."""
    if uri is not None and uri.startswith("liblxc:"):
        from qubes.backends.lxc.liblxc import LiblxcBackend

        return LiblxcBackend(uri, **options)
    return LXCBackend(uri, **options)


class LXCBackend(LibvirtBackend):
    """Domains as containers on the host's kernel, each in its own user
    namespace by default."""

    name = "lxc"
    default_uri = "lxc:///system"
    engine_name = "libvirt LXC"
    unused_volumes = _xml.NOT_MOUNTED

    _CAPABILITIES = Capabilities(
        domain_type="lxc",
        virt_modes=frozenset(("pv", "pvh")),
        memory_hotplug=False,
        pci_passthrough=False,
        networking="veth into the netvm's libvirt network (qubes-NETVM)",
    )

    @property
    def engine_capabilities(self) -> Capabilities:
        """Containers: pv and pvh domains; no hotplug, no PCI."""
        return self._CAPABILITIES

    def networks(self, spec: DomainSpec) -> list[str]:
        """The netvm's network, and a netvm's own."""
        return _xml.networks(spec)

    def build_xml(self, spec: DomainSpec) -> str:
        """The LXC domain XML of *spec*."""
        return _xml.build(spec)

    async def start(self, vm: Any) -> None:
        """Give the container its folders (see :mod:`._ownership`), then
        start it."""
        if not self.capabilities.simulated:
            await _ownership.prepare_domain(self.spec_of(vm), vm)
        await super().start(vm)
