"""The KVM (QEMU) dialect of libvirt domain XML.

Every domain is a full virtual machine. With a kernel from the kernel
pool it boots that kernel directly (``pvh`` and ``hvm`` alike: QEMU
enters a PVH-capable kernel through its PVH entry point); an ``hvm``
domain without a kernel boots its own disk through the firmware
(SeaBIOS, or OVMF with the ``uefi`` feature). Disks are virtio ``vda``
root, ``vdb`` private, ``vdc`` volatile, ``vdd`` the kernel's modules.

Networking: each domain that provides network has a libvirt network of
its own, ``qubes-NAME``, and the domains using it as their netvm are
plugged into that network; a netvm without a netvm of its own reaches
the outside through the uplink network (libvirt's ``default``).
"""

from __future__ import annotations

import lxml.etree
from lxml.etree import _Element as Element

from qubes import exc
from qubes.backends import _xml
from qubes.backends._xml import sub
from qubes.backends.spec import DiskSpec, DomainSpec

__all__ = ["build", "network_name", "KERNEL_CMDLINE"]


#: the command line before the domain's kernelopts; qubes.name tells the
#: guest its name
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0"
_TARGETS = {"root": 0, "private": 1, "volatile": 2, "kernel": 3}


def network_name(netvm: str) -> str:
    """The libvirt network behind netvm *netvm*."""
    return "qubes-" + netvm


def _hotplug(spec: DomainSpec) -> bool:
    return (
        spec.flag("memory-hotplug")
        and spec.maxmem > spec.memory
        and not spec.pci
    )


def _memory(domain: Element, spec: DomainSpec) -> None:
    # A PCI device does DMA into guest memory: it must not move, so no
    # balloon headroom (maxmem 0 means fixed, too).
    fixed = spec.maxmem == 0 or bool(spec.pci)
    top = spec.memory if fixed else max(spec.maxmem, spec.memory)
    if _hotplug(spec):
        sub(domain, "maxMemory", str(top), {"unit": "MiB", "slots": "1"})
        sub(domain, "memory", str(spec.memory), {"unit": "MiB"})
    else:
        sub(domain, "memory", str(top), {"unit": "MiB"})
    sub(domain, "currentMemory", str(spec.memory), {"unit": "MiB"})


def _os(domain: Element, spec: DomainSpec) -> None:
    os_element = sub(domain, "os")
    kernel = spec.kernel
    if kernel is None and spec.flag("uefi"):
        os_element.set("firmware", "efi")
    sub(os_element, "type", "hvm", {"arch": "x86_64"})
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
    cmdline = f"{KERNEL_CMDLINE} qubes.name={spec.name}"
    if spec.kernelopts:
        cmdline += " " + spec.kernelopts
    sub(os_element, "cmdline", cmdline)


def _features(domain: Element) -> None:
    features = sub(domain, "features")
    sub(features, "acpi")
    sub(features, "apic")


def _cpu(domain: Element, spec: DomainSpec) -> None:
    # QEMU adds hotplugged memory to a NUMA node: one node, all CPUs.
    if not _hotplug(spec):
        return
    cpu = sub(domain, "cpu")
    numa = sub(cpu, "numa")
    sub(
        numa,
        "cell",
        None,
        {
            "id": "0",
            "cpus": f"0-{spec.vcpus - 1}",
            "memory": str(spec.memory),
            "unit": "MiB",
        },
    )


def _disk(devices: Element, index: int, disk: DiskSpec) -> None:
    if disk.format == "dir":
        raise exc.QubesUnsupportedError(
            f"volume {disk.name!r} is a folder; QEMU domains need images"
        )
    block = disk.path.startswith("/dev/")
    element = sub(
        devices,
        "disk",
        None,
        {"type": "block" if block else "file", "device": "disk"},
    )
    sub(element, "driver", None, {"name": "qemu", "type": disk.format})
    sub(element, "source", None, {"dev" if block else "file": disk.path})
    target = _xml.disk_target("vd", index)
    sub(element, "target", None, {"dev": target, "bus": "virtio"})
    if not disk.rw:
        sub(element, "readonly")


def _disks(devices: Element, spec: DomainSpec) -> None:
    extra = len(_TARGETS)
    for disk in spec.disks:
        index = _TARGETS.get(disk.name)
        if index is None:
            index, extra = extra, extra + 1
        _disk(devices, index, disk)


def _interface(devices: Element, network: str, mac: str | None = None) -> None:
    interface = sub(devices, "interface", None, {"type": "network"})
    if mac:
        sub(interface, "mac", None, {"address": mac})
    sub(interface, "source", None, {"network": network})
    sub(interface, "model", None, {"type": "virtio"})


def _interfaces(devices: Element, spec: DomainSpec, uplink: str) -> None:
    if spec.net is not None:
        _interface(devices, network_name(spec.net.netvm), spec.net.mac)
    elif spec.provides_network and uplink:
        _interface(devices, uplink, spec.mac)
    if spec.provides_network:
        _interface(devices, network_name(spec.name))


def _console(devices: Element, log_file: str | None) -> None:
    serial = sub(devices, "serial", None, {"type": "pty"})
    if log_file:
        sub(serial, "log", None, {"file": log_file, "append": "off"})
    sub(serial, "target", None, {"port": "0"})
    console = sub(devices, "console", None, {"type": "pty"})
    sub(console, "target", None, {"type": "serial", "port": "0"})


def build(
    spec: DomainSpec,
    domain_type: str,
    uplink: str = "default",
    log_file: str | None = None,
) -> str:
    """The KVM domain XML of *spec*.

    :param domain_type: ``kvm``, or ``qemu`` without usable acceleration
    :param uplink: the network of netvms that have no netvm
    :param log_file: where the serial console's output is kept
    :raises QubesUnsupportedError: PVH without a kernel, a folder volume
    """
    domain = lxml.etree.Element("domain", {"type": domain_type})
    _xml.identity(domain, spec)
    _memory(domain, spec)
    _xml.vcpus(domain, spec)
    _os(domain, spec)
    _features(domain)
    _cpu(domain, spec)
    _xml.clock(domain)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    _disks(devices, spec)
    _interfaces(devices, spec, uplink)
    _xml.hostdevs(devices, spec, driver="vfio")
    _console(devices, log_file)
    sub(devices, "memballoon", None, {"model": "virtio"})
    return _xml.serialize(domain)
