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

import os
from collections.abc import Callable

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
_SKELETONS = _xml.Skeletons()


def network_name(netvm: str) -> str:
    """The libvirt network behind netvm *netvm*."""
    return "qubes-" + netvm


def own_network(spec: DomainSpec) -> str:
    """The network of a domain that provides network, for marks."""
    return network_name(spec.name)


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


def _cmdline(spec: DomainSpec) -> str:
    # qubes.name tells the guest its name.
    cmdline = f"{KERNEL_CMDLINE} qubes.name={spec.name}"
    if spec.kernelopts:
        cmdline += " " + spec.kernelopts
    return cmdline


def _os(domain: Element, spec: DomainSpec, marks: _xml.Marks) -> None:
    os_element = sub(domain, "os")
    if spec.kernel is None and spec.flag("uefi"):
        _xml.set_attr(os_element, "firmware", "efi")
    sub(os_element, "type", "hvm", {"arch": "x86_64"})
    if _xml.kernel_boot(os_element, spec):
        marks.text(sub(os_element, "cmdline"), _cmdline)


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


def _driver(fmt: str, block: bool) -> dict[str, str]:
    return {"name": "qemu", "type": fmt}


def _nic(
    devices: Element,
    marks: _xml.Marks,
    network: str | None,
    mac: _xml.Getter | None,
) -> None:
    """An ``<interface>`` into *network* (None: the domain's own)."""
    interface = sub(devices, "interface", None, {"type": "network"})
    if mac is not None:
        marks.attr(sub(interface, "mac"), "address", mac)
    source = sub(interface, "source")
    if network is None:
        marks.attr(source, "network", own_network)
    else:
        _xml.set_attr(source, "network", network)
    sub(interface, "model", None, {"type": "virtio"})


def _interfaces(
    devices: Element, spec: DomainSpec, marks: _xml.Marks, uplink: str
) -> None:
    if spec.net is not None:
        netvm_network = network_name(spec.net.netvm)
        _nic(devices, marks, netvm_network, _xml.net_mac)
    elif spec.provides_network and uplink:
        _nic(devices, marks, uplink, _xml.spec_mac if spec.mac else None)
    if spec.provides_network:
        _nic(devices, marks, None, None)


def log_file(log_dir: str, name: str) -> str:
    """Where the serial console of domain *name* is kept."""
    return os.path.join(log_dir, f"guest-{name}.log")


def _console(devices: Element, marks: _xml.Marks, log_dir: str) -> None:
    serial = sub(devices, "serial", None, {"type": "pty"})
    if log_dir:
        log = sub(serial, "log", None, {"append": "off"})
        # The folder joined once per skeleton, not once per domain.
        prefix = log_file(log_dir, "")[: -len(".log")]
        marks.attr(log, "file", lambda spec: f"{prefix}{spec.name}.log")
    sub(serial, "target", None, {"port": "0"})
    _xml.pty_console(devices, "serial")


def _tree(
    spec: DomainSpec, domain_type: str, uplink: str, log_dir: str
) -> Callable[[_xml.Marks], Element]:
    def tree(marks: _xml.Marks) -> Element:
        domain = lxml.etree.Element("domain", {"type": domain_type})
        _xml.identity(domain, marks)
        _memory(domain, spec)
        _xml.vcpus(domain, spec)
        _os(domain, spec, marks)
        _features(domain)
        _cpu(domain, spec)
        _xml.clock(domain)
        _xml.lifecycle(domain)
        devices = sub(domain, "devices")
        disk_kind = ("vd", "virtio")
        _xml.image_disks(devices, spec, "QEMU", disk_kind, _driver, marks)
        _interfaces(devices, spec, marks, uplink)
        _xml.hostdevs(devices, spec, driver="vfio")
        _console(devices, marks, log_dir)
        sub(devices, "memballoon", None, {"model": "virtio"})
        return domain

    return tree


def build(
    spec: DomainSpec,
    domain_type: str,
    uplink: str = "default",
    log_dir: str = "",
) -> str:
    """The KVM domain XML of *spec*.

    :param domain_type: ``kvm``, or ``qemu`` without usable acceleration
    :param uplink: the network of netvms that have no netvm
    :param log_dir: where the serial console's output is kept (see
        :func:`log_file`); empty for no log
    :raises QubesUnsupportedError: PVH without a kernel, a folder volume
    """
    key = (_xml.shape(spec), domain_type, uplink, log_dir)
    return _SKELETONS.xml(key, spec, _tree(spec, domain_type, uplink, log_dir))
