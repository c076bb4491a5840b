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

from qubes import exc
from qubes.backends import _xml
from qubes.backends._xml import sub
from qubes.backends.spec import DiskSpec, DomainSpec

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
_TARGETS = {"root": 0, "private": 1, "volatile": 2, "kernel": 3}


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
    kernel = spec.kernel
    if kernel is None:
        if spec.virt_mode != "hvm":
            raise exc.QubesUnsupportedError(
                f"a {spec.virt_mode} domain boots the kernel of the kernel "
                "pool, and this one has no kernel set",
                domain=spec.name,
                prop="kernel",
            )
        sub(os_element, "boot", None, {"dev": "hd"})
        return
    sub(os_element, "kernel", kernel.vmlinuz)
    sub(os_element, "initrd", kernel.initramfs)
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


def _disk(devices: Element, index: int, disk: DiskSpec) -> None:
    if disk.format == "dir":
        raise exc.QubesUnsupportedError(
            f"volume {disk.name!r} is a folder; Xen domains need images"
        )
    block = disk.path.startswith("/dev/")
    element = sub(
        devices,
        "disk",
        None,
        {"type": "block" if block else "file", "device": "disk"},
    )
    if block:
        sub(element, "driver", None, {"name": "phy"})
        sub(element, "source", None, {"dev": disk.path})
    else:
        sub(element, "driver", None, {"name": "qemu", "type": disk.format})
        sub(element, "source", None, {"file": disk.path})
    target = _xml.disk_target("xvd", index)
    sub(element, "target", None, {"dev": target, "bus": "xen"})
    if not disk.rw:
        sub(element, "readonly")


def _disks(devices: Element, spec: DomainSpec) -> None:
    extra = len(_TARGETS)
    for disk in spec.disks:
        index = _TARGETS.get(disk.name)
        if index is None:
            index, extra = extra, extra + 1
        _disk(devices, index, disk)


def _interface(devices: Element, spec: DomainSpec) -> None:
    net = spec.net
    if net is None:
        return
    interface = sub(devices, "interface", None, {"type": "ethernet"})
    sub(interface, "mac", None, {"address": net.mac})
    if net.ip:
        sub(interface, "ip", None, {"address": net.ip})
    sub(interface, "backenddomain", None, {"name": net.netvm})
    sub(interface, "script", None, {"path": "vif-route-qubes"})


def _console(devices: Element) -> None:
    console = sub(devices, "console", None, {"type": "pty"})
    sub(console, "target", None, {"type": "xen", "port": "0"})


def build(spec: DomainSpec) -> str:
    """The Xen domain XML of *spec*.

    :raises QubesUnsupportedError: PV or PVH without a kernel, a folder
        volume
    """
    domain = lxml.etree.Element("domain", {"type": "xen"})
    _xml.identity(domain, spec)
    _memory(domain, spec)
    _xml.vcpus(domain, spec)
    _os(domain, spec)
    _features(domain, spec)
    _xml.clock(domain)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    _disks(devices, spec)
    _interface(devices, spec)
    _xml.hostdevs(devices, spec)
    _console(devices)
    return _xml.serialize(domain)
