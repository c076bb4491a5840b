"""The Xen backend: libxl through libvirt, ``xen:///system``."""

from __future__ import annotations

from qubes.backends import Capabilities
from qubes.backends._base import LibvirtBackend
from qubes.backends.spec import DomainSpec
from qubes.backends.xen import _xml

__all__ = ["XenBackend"]


class XenBackend(LibvirtBackend):
    """PV, PVH and HVM domains on Xen; the netvm is the backend domain
    of each vif, as on Qubes OS."""

    name = "xen"
    default_uri = "xen:///system"
    engine_name = "libxl"

    _CAPABILITIES = Capabilities(
        domain_type="xen",
        virt_modes=frozenset(("pv", "pvh", "hvm")),
        memory_hotplug=True,
        pci_passthrough=True,
        networking="vif with the netvm as backend domain",
    )

    @property
    def engine_capabilities(self) -> Capabilities:
        """PV, PVH and HVM; memory hotplug for PVH; PCI passthrough."""
        return self._CAPABILITIES

    def build_xml(self, spec: DomainSpec) -> str:
        """The Xen domain XML of *spec*."""
        return _xml.build(spec)
