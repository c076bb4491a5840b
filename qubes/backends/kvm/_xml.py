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

from qubes.backends import _xml
from qubes.backends._xml import sub
from qubes.backends.spec import DomainSpec

__all__ = ["build", "network_name", "networks", "KERNEL_CMDLINE"]


#: the command line before the domain's kernelopts; qubes.name tells the
#: guest its name; panic=-1 turns a kernel panic into a reboot, which
#: ends the domain (on_reboot is destroy) instead of leaving it hung
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 panic=-1"
_PARTS = _xml.Parts()
# Where the per-domain values sit in the parts built below.
_MAC = 0  # <interface>: mac, source, model
_CMDLINE = 3  # <os>: type, kernel, initrd, cmdline
_LOG = 0  # <serial>: log, target


def network_name(netvm: str) -> str:
    """The libvirt network behind netvm *netvm*."""
    return "qubes-" + netvm


def networks(spec: DomainSpec) -> list[str]:
    """The ``qubes-NETVM`` networks *spec* is plugged into: its netvm's,
    and its own when it provides network."""
    found = []
    if spec.net is not None:
        found.append(network_name(spec.net.netvm))
    if spec.provides_network:
        found.append(network_name(spec.name))
    return found


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


def _os(spec: DomainSpec) -> Element:
    # Without the cmdline's text, which names the domain: the rest is
    # shared by the domains of one kernel.
    os_element = _xml.element("os")
    if spec.kernel is None and spec.flag("uefi"):
        _xml.set_attr(os_element, "firmware", "efi")
    sub(os_element, "type", "hvm", {"arch": "x86_64"})
    if _xml.kernel_boot(os_element, spec):
        sub(os_element, "cmdline")
    return os_element


def _os_of(domain: Element, spec: DomainSpec) -> None:
    key = ("os", spec.virt_mode, spec.kernel, spec.flag("uefi"))
    os_element = _PARTS.copy(key, lambda: _os(spec))
    if spec.kernel is not None:
        cmdline = f"{KERNEL_CMDLINE} qubes.name={spec.name}"
        if spec.kernelopts:
            cmdline += " " + spec.kernelopts
        _xml.set_text(os_element[_CMDLINE], cmdline)
    domain.append(os_element)


def _features() -> Element:
    features = _xml.element("features")
    sub(features, "acpi")
    sub(features, "apic")
    return features


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


def _driver(fmt: str, block: bool) -> dict[str, str]:
    return {"name": "qemu", "type": fmt}


def _disks(devices: Element, spec: DomainSpec) -> None:
    _xml.image_disks(devices, spec, "QEMU", ("vd", "virtio"), _driver, _PARTS)


def _nic(network: str, with_mac: bool) -> Element:
    interface = _xml.element("interface", None, {"type": "network"})
    if with_mac:
        sub(interface, "mac")
    sub(interface, "source", None, {"network": network})
    sub(interface, "model", None, {"type": "virtio"})
    return interface


def _interface(devices: Element, network: str, mac: str | None = None) -> None:
    with_mac = bool(mac)
    interface = _PARTS.copy(
        ("nic", network, with_mac), lambda: _nic(network, with_mac)
    )
    if mac:
        _xml.set_attr(interface[_MAC], "address", mac)
    devices.append(interface)


def _interfaces(devices: Element, spec: DomainSpec, uplink: str) -> None:
    if spec.net is not None:
        _interface(devices, network_name(spec.net.netvm), spec.net.mac)
    elif spec.provides_network and uplink:
        _interface(devices, uplink, spec.mac)
    if spec.provides_network:
        _interface(devices, network_name(spec.name))


def _serial(logged: bool) -> Element:
    serial = _xml.element("serial", None, {"type": "pty"})
    if logged:
        sub(serial, "log", None, {"append": "off"})
    sub(serial, "target", None, {"port": "0"})
    return serial


def _console(devices: Element, log_file: str | None) -> None:
    logged = bool(log_file)
    serial = _PARTS.copy(("serial", logged), lambda: _serial(logged))
    if log_file:
        _xml.set_attr(serial[_LOG], "file", log_file)
    devices.append(serial)
    devices.append(_PARTS.copy(("console",), _console_part))


def _console_part() -> Element:
    console = _xml.element("console", None, {"type": "pty"})
    sub(console, "target", None, {"type": "serial", "port": "0"})
    return console


def _memballoon() -> Element:
    return _xml.element("memballoon", None, {"model": "virtio"})


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
    _os_of(domain, spec)
    domain.append(_PARTS.copy(("features",), _features))
    _cpu(domain, spec)
    _xml.clock(domain)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    _disks(devices, spec)
    _interfaces(devices, spec, uplink)
    _xml.hostdevs(devices, spec, driver="vfio")
    _console(devices, log_file)
    devices.append(_PARTS.copy(("memballoon",), _memballoon))
    return _xml.serialize(domain)
