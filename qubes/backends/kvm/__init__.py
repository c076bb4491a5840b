"""The KVM backend: QEMU through libvirt, ``qemu:///system``."""

from __future__ import annotations

from typing import Any

import lxml.etree

from qubes import exc
from qubes.backends import Capabilities
from qubes.backends._base import LibvirtBackend
from qubes.backends.kvm import _xml
from qubes.backends.spec import DomainSpec

__all__ = ["KVMBackend", "accelerated_types", "kvm_runs_x86_64"]

DOMAIN_TYPES = ("kvm", "qemu")


def accelerated_types(capabilities_xml: str) -> set[str]:
    """The domain types libvirt's capabilities offer for x86_64 guests."""
    root = lxml.etree.fromstring(capabilities_xml.encode())
    found = root.xpath("guest[os_type='hvm']/arch[@name='x86_64']/domain/@type")
    return {str(kind) for kind in found}


def kvm_runs_x86_64(domain_capabilities_xml: str) -> bool:
    """Whether KVM can run an x86_64 guest, from libvirt's domain
    capabilities for ``virttype='kvm'``.

    A /dev/kvm can be there and still unusable: a nested KVM that does
    not offer the baseline x86_64 CPU (qemu64) starts a guest and then
    stalls on its first instructions. libvirt finds that out when it
    probes QEMU, and marks the model unusable.
    """
    root = lxml.etree.fromstring(domain_capabilities_xml.encode())
    usable = root.xpath(
        "cpu/mode[@name='custom']/model[text()='qemu64']/@usable"
    )
    return bool(usable) and usable[0] == "yes"


class KVMBackend(LibvirtBackend):
    """HVM domains on QEMU, with hardware acceleration (``kvm``) where
    the host offers it and software emulation (``qemu``) otherwise.

    :param domain_type: ``kvm`` or ``qemu``; by default read from the
        engine's capabilities: ``kvm`` when offered and able to run an
        x86_64 guest (:func:`kvm_runs_x86_64`), else ``qemu``
    :param uplink: the libvirt network netvms without a netvm use
    :param log_dir: where each guest's serial console is logged, as
        ``guest-NAME.log``; None for no log
    """

    name = "kvm"
    default_uri = "qemu:///system"

    def __init__(
        self,
        uri: str | None = None,
        *,
        domain_type: str | None = None,
        uplink: str = "default",
        log_dir: str | None = "/var/log/qubes",
        **kwargs: Any,
    ) -> None:
        super().__init__(uri, **kwargs)
        if domain_type is not None and domain_type not in DOMAIN_TYPES:
            raise exc.QubesValueError(
                f"domain_type {domain_type!r} is not kvm or qemu"
            )
        self._domain_type = domain_type
        self.uplink = uplink
        self.log_dir = log_dir

    @property
    def domain_type(self) -> str:
        """``kvm`` or ``qemu``, decided once per backend."""
        if self._domain_type is None:
            self._domain_type = "kvm" if self._kvm_usable() else "qemu"
        return self._domain_type

    def _kvm_usable(self) -> bool:
        caps = self.connection.call(
            "capabilities", lambda c: c.getCapabilities()
        )
        if "kvm" not in accelerated_types(caps):
            return False
        try:
            domain_caps = self.connection.call(
                "capabilities",
                lambda c: c.getDomainCapabilities(None, "x86_64", None, "kvm"),
            )
        except exc.QubesBackendError:
            # An engine without domain capabilities: trust the offer.
            return True
        return kvm_runs_x86_64(domain_caps)

    @property
    def engine_capabilities(self) -> Capabilities:
        """HVM and PVH (direct kernel boot), memory hotplug, PCI."""
        return Capabilities(
            domain_type=self.domain_type,
            virt_modes=frozenset(("hvm", "pvh")),
            memory_hotplug=True,
            pci_passthrough=True,
            networking="a libvirt network per netvm (qubes-NETVM)",
        )

    def networks(self, spec: DomainSpec) -> list[str]:
        """The netvm's network, and a netvm's own."""
        return _xml.networks(spec)

    def build_xml(self, spec: DomainSpec) -> str:
        """The KVM domain XML of *spec*."""
        log_dir = self.log_dir or ""
        return _xml.build(spec, self.domain_type, self.uplink, log_dir)

    @property
    def engine_name(self) -> str:  # type: ignore[override]
        """QEMU, and whether accelerated."""
        return f"QEMU, domain type {self.domain_type}"
