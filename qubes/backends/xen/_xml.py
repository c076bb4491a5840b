"""The Xen (libxl) dialect of libvirt domain XML.

PV and PVH domains boot the kernel from the kernel pool directly; HVM
domains boot through hvmloader, with SeaBIOS or, with the ``uefi``
feature, OVMF (libxl picks the firmware from the loader type). Disks are
``xvda`` root, ``xvdb`` private, ``xvdc`` volatile and ``xvdd`` the
kernel's modules; the network is a vif whose backend is the netvm.
"""

from __future__ import annotations

import functools

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
_SKELETONS = _xml.Skeletons()


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


def _os(domain: Element, spec: DomainSpec) -> None:
    machine, os_type = _OS_TYPE[spec.virt_mode]
    os_element = sub(domain, "os")
    sub(os_element, "type", os_type, {"arch": "x86_64", "machine": machine})
    if spec.virt_mode == "hvm":
        firmware = "pflash" if spec.flag("uefi") else "rom"
        sub(os_element, "loader", HVMLOADER, {"type": firmware})
    if not _xml.kernel_boot(os_element, spec):
        return
    cmdline = KERNEL_CMDLINE
    if spec.kernelopts:
        cmdline += " " + spec.kernelopts
    sub(os_element, "cmdline", cmdline)


def _features(domain: Element, spec: DomainSpec) -> None:
    features = sub(domain, "features")
    if spec.virt_mode != "pv":
        for name in ("pae", "acpi", "apic"):
            sub(features, name)
    elif spec.pci:
        # A PV domain with PCI devices needs the host's memory map to
        # place the devices' memory holes where the hardware has them.
        xen = sub(features, "xen")
        sub(xen, "e820_host", None, {"state": "on"})


def _driver(fmt: str, block: bool) -> dict[str, str]:
    if block:
        return {"name": "phy"}
    return {"name": "qemu", "type": fmt}


def _interface(devices: Element, spec: DomainSpec, marks: _xml.Marks) -> None:
    net = spec.net
    if net is None:
        return
    interface = sub(devices, "interface", None, {"type": "ethernet"})
    marks.attr(sub(interface, "mac"), "address", _xml.net_mac)
    if net.ip:
        marks.attr(sub(interface, "ip"), "address", _xml.net_ip)
    sub(interface, "backenddomain", None, {"name": net.netvm})
    sub(interface, "script", None, {"path": "vif-route-qubes"})


def _tree(spec: DomainSpec, marks: _xml.Marks) -> Element:
    domain = lxml.etree.Element("domain", {"type": "xen"})
    _xml.identity(domain, marks)
    _memory(domain, spec)
    _xml.vcpus(domain, spec)
    _os(domain, spec)
    _features(domain, spec)
    _xml.clock(domain)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    disk_kind = ("xvd", "xen")
    _xml.image_disks(devices, spec, "Xen", disk_kind, _driver, marks)
    _interface(devices, spec, marks)
    _xml.hostdevs(devices, spec)
    _xml.pty_console(devices, "xen")
    return domain


def build(spec: DomainSpec) -> str:
    """The Xen domain XML of *spec*.

    :raises QubesUnsupportedError: PV or PVH without a kernel, a folder
        volume
    """
    return _SKELETONS.xml(
        _xml.shape(spec), spec, functools.partial(_tree, spec)
    )
