"""The LXC dialect of libvirt domain XML.

A domain is a container: it runs ``/sbin/init`` (or the ``lxc.init``
feature's program) on the host's kernel, so the kernel volume is not
used and a domain's ``virt_mode`` must be pv or pvh (a paravirtualised
guest is what a container is closest to; hvm needs a hypervisor). Its
root volume is mounted at ``/`` and its private volume at ``/rw``;
image files are loop-mounted, folders bind-mounted, and a volume the
domain may not write is mounted read-only. The volatile volume is not
mounted: a container swaps and keeps scratch space on the host.

By default the container has a user namespace: uid and gid 0 inside map
to an unprivileged range of the host, a range of its own for each qid.
The ``lxc.userns`` feature set to ``0`` turns this off. It always gets a
network namespace of its own (``privnet``).

Networking: a veth pair into the netvm's libvirt network, ``qubes-NAME``
(see :mod:`qubes.backends.kvm._xml`), with the domain's address and a
default route through its netvm.
"""

from __future__ import annotations

import functools

import lxml.etree
from lxml.etree import _Element as Element

from qubes import exc
from qubes.backends import _xml
from qubes.backends._xml import sub
from qubes.backends.kvm._xml import network_name, networks
from qubes.backends.spec import DomainSpec

__all__ = ["build", "idmap_target", "networks", "IDMAP_BASE", "IDMAP_COUNT"]


#: host uid/gid of uid 0 in the container of qid 0; qid N starts N ranges
#: further
IDMAP_BASE = 100000
IDMAP_COUNT = 65536
_UID_LIMIT = 2**32 - 1

_MOUNTS = {"root": "/", "private": "/rw"}
#: volumes a container does without (see the module's description)
_NOT_MOUNTED = frozenset(("volatile", "kernel"))
#: a /8 holds every Qubes address (10.137 domains, 10.138 DispVMs,
#: 10.139 DNS), so the netvm's address is on-link
_PREFIX = "8"
_PARTS = _xml.Parts()
# Where the per-domain values sit in the parts built below.
_INITENV = 2  # <os>: type, init, initenv


def idmap_target(qid: int) -> int:
    """The host uid (and gid) that uid 0 of domain *qid* maps to.

    :raises QubesUnsupportedError: the range would pass the last uid
    """
    target = IDMAP_BASE + qid * IDMAP_COUNT
    if target + IDMAP_COUNT - 1 > _UID_LIMIT:
        raise exc.QubesUnsupportedError(
            f"qid {qid} is too large for a private uid range"
        )
    return target


def uses_userns(spec: DomainSpec) -> bool:
    """Whether the container of *spec* gets a user namespace."""
    return _userns(spec)


def _userns(spec: DomainSpec) -> bool:
    return spec.feature("lxc.userns", "1") not in ("", "0")


def _memory(domain: Element, spec: DomainSpec) -> None:
    # A container's memory is a cgroup limit: maxmem when it balloons.
    top = max(spec.maxmem, spec.memory)
    sub(domain, "memory", str(top), {"unit": "MiB"})
    sub(domain, "currentMemory", str(spec.memory), {"unit": "MiB"})


def _os(init: str) -> Element:
    os_element = _xml.element("os")
    sub(os_element, "type", "exe", {"arch": "x86_64"})
    sub(os_element, "init", init)
    sub(os_element, "initenv", None, {"name": "QUBES_NAME"})
    return os_element


def init_of(spec: DomainSpec) -> str:
    """The container's init program (feature ``lxc.init``)."""
    init = spec.feature("lxc.init") or "/sbin/init"
    if (
        not init.startswith("/")
        or len(init) < 2
        or any(ord(c) < 32 or ord(c) == 127 for c in init)
    ):
        raise exc.QubesValueError(
            f"feature lxc.init must be an absolute path, not {init!r}",
            domain=spec.name,
        )
    return init


def _os_of(domain: Element, spec: DomainSpec) -> None:
    init = init_of(spec)
    os_element = _PARTS.copy(("os", init), lambda: _os(init))
    _xml.set_text(os_element[_INITENV], spec.name)
    domain.append(os_element)


def _features() -> Element:
    # A container without an interface would otherwise share the host's
    # network namespace: each one gets its own, always.
    features = _xml.element("features")
    sub(features, "privnet")
    return features


def _idmap(domain: Element, spec: DomainSpec) -> None:
    if not _userns(spec):
        return
    idmap = sub(domain, "idmap")
    target = str(idmap_target(spec.qid))
    for kind in ("uid", "gid"):
        sub(
            idmap,
            kind,
            None,
            {"start": "0", "target": target, "count": str(IDMAP_COUNT)},
        )


def _filesystem(fmt: str, mount: str, rw: bool) -> Element:
    if fmt == "dir":
        element = _xml.element(
            "filesystem", None, {"type": "mount", "accessmode": "passthrough"}
        )
    else:
        element = _xml.element(
            "filesystem", None, {"type": "file", "accessmode": "passthrough"}
        )
        # Raw images are loop-mounted; qcow2 ones go through qemu-nbd.
        driver = "loop" if fmt == "raw" else "nbd"
        sub(element, "driver", None, {"type": driver, "format": fmt})
    sub(element, "source")
    sub(element, "target", None, {"dir": mount})
    if not rw:
        sub(element, "readonly")
    return element


def _filesystems(devices: Element, spec: DomainSpec) -> None:
    for disk in spec.disks:
        mount = _MOUNTS.get(disk.name)
        if mount is None:
            if disk.name in _NOT_MOUNTED:
                continue
            raise exc.QubesUnsupportedError(
                f"volume {disk.name!r}: a container mounts only the root "
                "and private volumes",
                domain=spec.name,
            )
        shape = (disk.format, mount, disk.rw)
        element = _PARTS.copy(
            ("fs", *shape), functools.partial(_filesystem, *shape)
        )
        source = "dir" if disk.format == "dir" else "file"
        # <filesystem>: [driver,] source, target
        position = 0 if disk.format == "dir" else 1
        _xml.set_attr(element[position], source, disk.path)
        devices.append(element)
    if spec.disk("root") is None:
        raise exc.QubesUnsupportedError(
            "a container needs a root volume", domain=spec.name
        )


def _nic(network: str, mac: bool, ip: bool, route: bool) -> Element:
    interface = _xml.element("interface", None, {"type": "network"})
    if mac:
        sub(interface, "mac")
    sub(interface, "source", None, {"network": network})
    if ip:
        sub(interface, "ip", None, {"prefix": _PREFIX})
    if route:
        sub(interface, "route", None, {"address": "0.0.0.0", "prefix": "0"})
    return interface


def _interface(
    devices: Element,
    network: str,
    mac: str | None,
    ip: str | None,
    gateway: str | None = None,
) -> None:
    shape = (network, bool(mac), bool(ip), bool(gateway))
    interface = _PARTS.copy(("nic", *shape), lambda: _nic(*shape))
    # <interface>: [mac,] source, [ip,] [route]
    position = 0
    if mac:
        _xml.set_attr(interface[position], "address", mac)
        position += 1
    position += 1
    if ip:
        _xml.set_attr(interface[position], "address", ip)
        position += 1
    if gateway:
        _xml.set_attr(interface[position], "gateway", gateway)
    devices.append(interface)


def _interfaces(devices: Element, spec: DomainSpec) -> None:
    net = spec.net
    if net is not None:
        _interface(
            devices, network_name(net.netvm), net.mac, net.ip, net.gateway
        )
    if spec.provides_network:
        _interface(devices, network_name(spec.name), None, spec.ip)


def _console() -> Element:
    console = _xml.element("console", None, {"type": "pty"})
    sub(console, "target", None, {"type": "lxc", "port": "0"})
    return console


def build(spec: DomainSpec) -> str:
    """The LXC domain XML of *spec*.

    :raises QubesUnsupportedError: no root volume, an extra volume, a
        qid too large for a uid range
    """
    domain = lxml.etree.Element("domain", {"type": "lxc"})
    _xml.identity(domain, spec)
    _memory(domain, spec)
    _xml.vcpus(domain, spec)
    _os_of(domain, spec)
    domain.append(_PARTS.copy(("features",), _features))
    _idmap(domain, spec)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    _filesystems(devices, spec)
    _interfaces(devices, spec)
    devices.append(_PARTS.copy(("console",), _console))
    return _xml.serialize(domain)
