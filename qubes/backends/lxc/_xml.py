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
from typing import NamedTuple

import lxml.etree
from lxml.etree import _Element as Element

from qubes import exc
from qubes.backends import _xml
from qubes.backends._xml import sub
from qubes.backends.kvm._xml import network_name, networks, own_network
from qubes.backends.spec import DiskSpec, DomainSpec

__all__ = [
    "build",
    "idmap_target",
    "networks",
    "IDMAP_BASE",
    "IDMAP_COUNT",
    "NOT_MOUNTED",
]


#: host uid/gid of uid 0 in the container of qid 0; qid N starts N ranges
#: further
IDMAP_BASE = 100000
IDMAP_COUNT = 65536
_UID_LIMIT = 2**32 - 1

_MOUNTS = {"root": "/", "private": "/rw"}
#: volumes a container does without (see the module's description)
NOT_MOUNTED = frozenset(("volatile", "kernel"))
#: a /8 holds every Qubes address (10.137 domains, 10.138 DispVMs,
#: 10.139 DNS), so the netvm's address is on-link
_PREFIX = "8"
_DEFAULT_ROUTE = {"address": "0.0.0.0", "prefix": "0"}
_FOLDER = {"type": "mount", "accessmode": "passthrough"}
_IMAGE = {"type": "file", "accessmode": "passthrough"}
_SKELETONS = _xml.Skeletons()


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


def _os(domain: Element, spec: DomainSpec, marks: _xml.Marks) -> None:
    os_element = sub(domain, "os")
    sub(os_element, "type", "exe", {"arch": "x86_64"})
    sub(os_element, "init", init_of(spec))
    initenv = sub(os_element, "initenv", None, {"name": "QUBES_NAME"})
    marks.text(initenv, _xml.spec_name)


def _features(domain: Element) -> None:
    # A container without an interface would otherwise share the host's
    # network namespace: each one gets its own, always.
    features = sub(domain, "features")
    sub(features, "privnet")


def _idmap_start(spec: DomainSpec) -> str:
    return str(idmap_target(spec.qid))


def _idmap(domain: Element, spec: DomainSpec, marks: _xml.Marks) -> None:
    if not _userns(spec):
        return
    idmap = sub(domain, "idmap")
    for kind in ("uid", "gid"):
        # The target is marked: an attribute of its own for each qid.
        attrib = {"start": "0", "target": "", "count": str(IDMAP_COUNT)}
        marks.attr(sub(idmap, kind, None, attrib), "target", _idmap_start)


def _filesystem(devices: Element, disk: DiskSpec) -> Element:
    """A ``<filesystem>`` for *disk*, up to its driver."""
    if disk.format == "dir":
        element = sub(devices, "filesystem", None, _FOLDER)
    else:
        element = sub(devices, "filesystem", None, _IMAGE)
        # Raw images are loop-mounted; qcow2 ones go through qemu-nbd.
        driver = "loop" if disk.format == "raw" else "nbd"
        sub(element, "driver", None, {"type": driver, "format": disk.format})
    return element


def _filesystems(devices: Element, spec: DomainSpec, marks: _xml.Marks) -> None:
    for position, disk in enumerate(spec.disks):
        mount = _MOUNTS.get(disk.name)
        if mount is None:
            if disk.name in NOT_MOUNTED:
                continue
            raise exc.QubesUnsupportedError(
                f"volume {disk.name!r}: a container mounts only the root "
                "and private volumes",
                domain=spec.name,
            )
        element = _filesystem(devices, disk)
        kind = "dir" if disk.format == "dir" else "file"
        source = sub(element, "source")
        marks.attr(source, kind, _xml.disk_path(position))
        sub(element, "target", None, {"dir": mount})
        if not disk.rw:
            sub(element, "readonly")
    if spec.disk("root") is None:
        raise exc.QubesUnsupportedError(
            "a container needs a root volume", domain=spec.name
        )


class _Link(NamedTuple):
    """An interface's values, each a mark's value or None."""

    network: str | None  # None: the domain's own network
    mac: _xml.Getter | None
    ip: _xml.Getter | None
    gateway: _xml.Getter | None


def _interface(devices: Element, link: _Link, marks: _xml.Marks) -> None:
    interface = sub(devices, "interface", None, {"type": "network"})
    if link.mac is not None:
        marks.attr(sub(interface, "mac"), "address", link.mac)
    source = sub(interface, "source")
    if link.network is None:
        marks.attr(source, "network", own_network)
    else:
        _xml.set_attr(source, "network", link.network)
    if link.ip is not None:
        ip = sub(interface, "ip", None, {"prefix": _PREFIX})
        marks.attr(ip, "address", link.ip)
    if link.gateway is not None:
        route = sub(interface, "route", None, _DEFAULT_ROUTE)
        marks.attr(route, "gateway", link.gateway)


def _interfaces(devices: Element, spec: DomainSpec, marks: _xml.Marks) -> None:
    net = spec.net
    if net is not None:
        link = _Link(
            network_name(net.netvm),
            _xml.net_mac if net.mac else None,
            _xml.net_ip if net.ip else None,
            _xml.net_gateway if net.gateway else None,
        )
        _interface(devices, link, marks)
    if spec.provides_network:
        own_ip = _xml.spec_ip if spec.ip else None
        _interface(devices, _Link(None, None, own_ip, None), marks)


def _tree(spec: DomainSpec, marks: _xml.Marks) -> Element:
    domain = lxml.etree.Element("domain", {"type": "lxc"})
    _xml.identity(domain, marks)
    _memory(domain, spec)
    _xml.vcpus(domain, spec)
    _os(domain, spec, marks)
    _features(domain)
    _idmap(domain, spec, marks)
    _xml.lifecycle(domain)
    devices = sub(domain, "devices")
    _filesystems(devices, spec, marks)
    _interfaces(devices, spec, marks)
    _xml.pty_console(devices, "lxc")
    return domain


def build(spec: DomainSpec) -> str:
    """The LXC domain XML of *spec*.

    :raises QubesUnsupportedError: no root volume, an extra volume, a
        qid too large for a uid range
    """
    return _SKELETONS.xml(
        _xml.shape(spec), spec, functools.partial(_tree, spec)
    )
