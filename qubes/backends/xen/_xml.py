"""The Xen (libxl) dialect of libvirt domain XML.

PV and PVH domains boot the kernel from the kernel pool directly; HVM
domains boot through hvmloader, with SeaBIOS or, with the ``uefi``
feature, OVMF (libxl picks the firmware from the loader type). Disks are
``xvda`` root, ``xvdb`` private, ``xvdc`` volatile and ``xvdd`` the
kernel's modules; the network is a vif whose backend is the netvm.
"""

from __future__ import annotations

import lxml.etree
from lxml.etree import _Element as Element

from qubes.backends import _xml
from qubes.backends._xml import sub
from qubes.backends.spec import DomainSpec

__all__ = ["build", "KERNEL_CMDLINE"]


HVMLOADER = "/usr/lib/xen/boot/hvmloader"
#: the command line Qubes guests expect, before the domain's kernelopts
KERNEL_CMDLINE = (
    "root=/dev/mapper/dmroot ro nomodeset console=hvc0 "
    "rd_NO_PLYMOUTH rd.plymouth.enable=0 plymouth.enable=0"
)
_OS_TYPE = {
    "pv": ("xenpv", "linux"),
    "pvh": ("xenpvh", "xenpvh"),
    "hvm": ("xenfv", "hvm"),
}
_PARTS = _xml.Parts()
# Where the per-domain values sit in the parts built below.
_MAC, _IP = 0, 1  # <interface>: mac, ip, backenddomain, script


def _fixed_memory(spec: DomainSpec) -> bool:
    # PCI devices do DMA into guest memory: it must not move.
    return spec.maxmem == 0 or bool(spec.pci)


def _memory(domain: Element, spec: DomainSpec) -> None:
    top = max(spec.maxmem, spec.memory)
    if _fixed_memory(spec):
        sub(domain, "memory", str(spec.memory), {"unit": "MiB"})
    elif spec.virt_mode == "pvh" and spec.flag("memory-hotplug"):
        sub(domain, "maxMemory", str(top), {"unit": "MiB", "slots": "1"})
        sub(domain, "memory", str(spec.memory), {"unit": "MiB"})
    else:
        sub(domain, "memory", str(top), {"unit": "MiB"})
    sub(domain, "currentMemory", str(spec.memory), {"unit": "MiB"})


def _os(spec: DomainSpec) -> Element:
    machine, os_type = _OS_TYPE[spec.virt_mode]
    os_element = _xml.element("os")
    sub(os_element, "type", os_type, {"arch": "x86_64", "machine": machine})
    if spec.virt_mode == "hvm":
        firmware = "pflash" if spec.flag("uefi") else "rom"
        sub(os_element, "loader", HVMLOADER, {"type": firmware})
    if not _xml.kernel_boot(os_element, spec):
        return os_element
    cmdline = KERNEL_CMDLINE
    if spec.kernelopts:
        cmdline += " " + spec.kernelopts
    sub(os_element, "cmdline", cmdline)
    return os_element


def _features(virt_mode: str, pci: bool) -> Element:
    features = _xml.element("features")
    if virt_mode != "pv":
        for name in ("pae", "acpi", "apic"):
            sub(features, name)
    elif pci:
        # A PV domain with PCI devices needs the host's memory map to
        # place the devices' memory holes where the hardware has them.
        xen = sub(features, "xen")
        sub(xen, "e820_host", None, {"state": "on"})
    return features


def _driver(fmt: str, block: bool) -> dict[str, str]:
    if block:
        return {"name": "phy"}
    return {"name": "qemu", "type": fmt}


def _disks(devices: Element, spec: DomainSpec) -> None:
    _xml.image_disks(devices, spec, "Xen", ("xvd", "xen"), _driver, _PARTS)


def _vif(netvm: str, with_ip: bool) -> Element:
    interface = _xml.element("interface", None, {"type": "ethernet"})
    sub(interface, "mac")
    if with_ip:
        sub(interface, "ip")
    sub(interface, "backenddomain", None, {"name": netvm})
    sub(interface, "script", None, {"path": "vif-route-qubes"})
    return interface


def _interface(devices: Element, spec: DomainSpec) -> None:
    net = spec.net
    if net is None:
        return
    with_ip = bool(net.ip)
    interface = _PARTS.copy(
        ("vif", net.netvm, with_ip), lambda: _vif(net.netvm, with_ip)
    )
    _xml.set_attr(interface[_MAC], "address", net.mac)
    if net.ip:
        _xml.set_attr(interface[_IP], "address", net.ip)
    devices.append(interface)


def _console() -> Element:
    console = _xml.element("console", None, {"type": "pty"})
    sub(console, "target", None, {"type": "xen", "port": "0"})
    return console


def build(spec: DomainSpec) -> str:
    """The Xen domain XML of *spec*.

    :raises QubesUnsupportedError: PV or PVH without a kernel, a folder
        volume
    """
    domain = lxml.etree.Element("domain", {"type": "xen"})
    _xml.identity(domain, spec)
    _memory(domain, spec)
    _xml.vcpus(domain, spec)
    os_key = (
        "os",
        spec.virt_mode,
        spec.kernel,
        spec.kernelopts,
        spec.flag("uefi"),
    )
    domain.append(_PARTS.copy(os_key, lambda: _os(spec)))
    pci = bool(spec.pci)
    domain.append(
        _PARTS.copy(
            ("features", spec.virt_mode, pci),
            lambda: _features(spec.virt_mode, pci),
        )
    )
    _xml.clock(domain)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    _disks(devices, spec)
    _interface(devices, spec)
    _xml.hostdevs(devices, spec)
    devices.append(_PARTS.copy(("console",), _console))
    return _xml.serialize(domain)
