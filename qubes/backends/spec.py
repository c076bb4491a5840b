"""What a domain's libvirt XML is made from, as plain immutable data.

:func:`domain_spec` reads a domain once — its properties, volumes,
network and devices — into a :class:`DomainSpec`. The XML builders of
every backend work from the spec alone, never from the domain, so that:

- a builder is a pure function, tested without a store;
- specs are named tuples: immutable, hashable, and cheap to make, which
  matters when a thousand domains are read;
- two starts of an unchanged domain give equal specs, and the XML built
  for the first is reused for the second (a spec is hashable);
- the domain model is read in exactly one place.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from qubes import exc
from qubes.devices import pci_address

__all__ = [
    "DiskSpec",
    "DomainSpec",
    "KernelSpec",
    "NetSpec",
    "PCISpec",
    "XML_FEATURES",
    "domain_spec",
]

#: features that change the XML, looked up with the template's as fallback
XML_FEATURES = ("uefi", "memory-hotplug", "lxc.init", "lxc.userns")

#: volumes in the order their disks are attached
VOLUME_ORDER = ("root", "private", "volatile", "kernel")


class DiskSpec(NamedTuple):
    """One volume as a disk.

    :param name: the volume's name (``root``, ``private``...)
    :param path: image file or folder
    :param format: ``raw``, ``qcow2`` or ``dir``
    :param rw: whether the domain may write to it
    """

    name: str
    path: str
    format: str
    rw: bool


class KernelSpec(NamedTuple):
    """A kernel from the kernel pool."""

    version: str
    vmlinuz: str
    initramfs: str


class NetSpec(NamedTuple):
    """The domain's link to its netvm.

    :param netvm: the netvm's name
    :param netvm_qid: the netvm's qid
    :param mac: this domain's MAC address
    :param ip: this domain's IPv4 address
    :param gateway: the netvm's address, this domain's gateway
    """

    netvm: str
    netvm_qid: int
    mac: str
    ip: str | None
    gateway: str | None


class PCISpec(NamedTuple):
    """A PCI device of the host, assigned to the domain."""

    bus: int
    slot: int
    function: int


class DomainSpec(NamedTuple):
    """Everything any backend's XML of one domain depends on."""

    name: str
    uuid: str
    qid: int
    klass: str
    memory: int
    maxmem: int
    vcpus: int
    virt_mode: str
    kernel: KernelSpec | None
    kernelopts: str
    disks: tuple[DiskSpec, ...]
    net: NetSpec | None
    provides_network: bool
    mac: str | None
    ip: str | None
    pci: tuple[PCISpec, ...]
    features: tuple[tuple[str, str], ...]
    debug: bool

    def feature(self, name: str, default: str = "") -> str:
        """The value of an XML-relevant feature, or *default*."""
        for key, value in self.features:
            if key == name:
                return value
        return default

    def flag(self, name: str) -> bool:
        """Whether a feature is set to a true value (not "" or "0")."""
        return self.feature(name) not in ("", "0")

    def disk(self, name: str) -> DiskSpec | None:
        """The disk of volume *name*, if the domain has it."""
        for disk in self.disks:
            if disk.name == name:
                return disk
        return None


def _disks(volumes: dict[str, Any], kernel: Any) -> tuple[DiskSpec, ...]:
    # The kernel disk is the current kernel's (*kernel*, None for none).
    disks = []
    for name in VOLUME_ORDER:
        volume = kernel if name == "kernel" else volumes.get(name)
        if volume is not None:
            disks.append(DiskSpec(name, volume.path, volume.format, volume.rw))
    for name in sorted(n for n in volumes if n not in VOLUME_ORDER):
        volume = volumes[name]
        disks.append(DiskSpec(name, volume.path, volume.format, volume.rw))
    return tuple(disks)


def _kernel(vm: Any, kernel: str | None, volume: Any) -> KernelSpec | None:
    if kernel is None:
        return None
    if volume is None or not hasattr(volume, "vmlinuz"):
        raise exc.QubesStorageError(
            f"kernel {kernel!r} is set, but the domain has no kernel "
            "volume from a linux-kernel pool",
            domain=vm.name,
        )
    return KernelSpec(kernel, volume.vmlinuz, volume.initramfs)


def _net(vm: Any, ip: str | None) -> NetSpec | None:
    netvm = getattr(vm, "netvm", None)
    if netvm is None:
        return None
    return NetSpec(netvm.name, netvm.qid, vm.mac, ip, netvm.gateway)


def _pci(vm: Any) -> tuple[PCISpec, ...]:
    return tuple(
        PCISpec(*pci_address(assignment.ident))
        for assignment in vm.devices["pci"]
    )


def domain_spec(vm: Any) -> DomainSpec:
    """Read *vm* into a :class:`DomainSpec`, each property once.

    :raises QubesException: a property or volume cannot be read
    """
    kernel = vm.kernel
    kernel_volume = vm.storage.kernel_volume()
    # Without a kernel of the pool (kernel ''), the domain boots its own
    # and gets no kernel disk.
    attached = kernel_volume is not None and kernel_volume.attached
    ip = getattr(vm, "visible_ip", None)
    # Positional: a thousand specs are made in a row (the order of the
    # fields of DomainSpec).
    return DomainSpec(
        vm.name,
        str(vm.uuid),
        vm.qid,
        vm.klass,
        vm.memory,
        vm.maxmem,
        vm.vcpus,
        vm.virt_mode,
        _kernel(vm, kernel, kernel_volume),
        vm.kernelopts,
        _disks(vm.volumes, kernel_volume if attached else None),
        _net(vm, ip),
        bool(getattr(vm, "provides_network", False)),
        getattr(vm, "mac", None),
        ip,
        _pci(vm),
        vm.features.many_with_template(XML_FEATURES),
        vm.debug,
    )
