"""A domain as liblxc configuration: the same container as the libvirt
LXC XML of :mod:`._xml`, in liblxc's keys.

The root volume is the container's root filesystem, the private volume
a bind mount at ``/rw``; folders only (liblxc mounts image files itself
only as the root, and the storage drivers give containers folders).
``/run`` and ``/tmp`` are a tmpfs each, as the guest's init would mount
them (on libvirt LXC it does). The id map, the init and its
``QUBES_NAME`` are those of the libvirt XML. The network is a veth
pair per interface into a host bridge named after the netvm's network
(see :func:`qubes.backends._base.bridge_name`).

Memory and CPU limits are not set: liblxc writes them as cgroup keys
whose names differ between cgroup versions, and these hosts mix both.
A container on liblxc is therefore bound only by the host; the libvirt
LXC engine does apply them.
"""

from __future__ import annotations

import re

from qubes import exc
from qubes.backends._base import bridge_name
from qubes.backends.kvm._xml import network_name
from qubes.backends.lxc._xml import (
    IDMAP_COUNT,
    idmap_target,
    init_of,
    uses_userns,
)
from qubes.backends.spec import DiskSpec, DomainSpec

__all__ = ["lxc_config", "MULTI_VALUED"]

#: keys that take several values: set one value per call
MULTI_VALUED = frozenset(("lxc.idmap", "lxc.mount.entry", "lxc.environment"))

Items = list[tuple[str, str]]

# One search, not a loop in Python over the path's characters (which
# was most of the time lxc_config takes).
_BLANK = re.compile(r"\s")


def _folder(disk: DiskSpec, spec: DomainSpec) -> str:
    if disk.format != "dir":
        raise exc.QubesUnsupportedError(
            f"volume {disk.name!r} is a {disk.format} image; on liblxc a "
            "container's volumes are folders (a dir pool)",
            domain=spec.name,
        )
    # A mount entry is split at blanks: a path with one cannot be said.
    if _BLANK.search(disk.path):
        raise exc.QubesUnsupportedError(
            f"volume {disk.name!r}: liblxc cannot mount a path with "
            f"blanks ({disk.path!r})",
            domain=spec.name,
        )
    return disk.path


def _filesystems(spec: DomainSpec) -> Items:
    root = spec.disk("root")
    if root is None:
        raise exc.QubesUnsupportedError(
            "a container needs a root volume", domain=spec.name
        )
    items = [("lxc.rootfs.path", _folder(root, spec))]
    if not root.rw:
        items.append(("lxc.rootfs.options", "ro"))
    private = spec.disk("private")
    if private is not None:
        mode = "rw" if private.rw else "ro"
        items.append(
            (
                "lxc.mount.entry",
                f"{_folder(private, spec)} rw none bind,create=dir,{mode} 0 0",
            )
        )
    return items


#: the guest's scratch folders, each a tmpfs of its own
_SCRATCH = ("run", "tmp")


def _scratch() -> Items:
    # The mounts the guest's init would otherwise make itself, with a
    # mount(8) process each: liblxc makes them in the container's set-
    # up, by system call, and the init finds them already there.
    return [
        ("lxc.mount.entry", f"tmpfs {folder} tmpfs rw,create=dir 0 0")
        for folder in _SCRATCH
    ]


def _idmap(spec: DomainSpec) -> Items:
    if not uses_userns(spec):
        return []
    target = idmap_target(spec.qid)
    return [("lxc.idmap", f"{kind} 0 {target} {IDMAP_COUNT}") for kind in "ug"]


def _interface(
    index: int,
    bridge: str,
    mac: str | None,
    ip: str | None,
    gateway: str | None,
) -> Items:
    key = f"lxc.net.{index}"
    items = [
        (f"{key}.type", "veth"),
        (f"{key}.link", bridge),
        (f"{key}.flags", "up"),
    ]
    if mac:
        items.append((f"{key}.hwaddr", mac))
    if ip:
        # A /8 holds every Qubes address, so the gateway is on-link.
        items.append((f"{key}.ipv4.address", f"{ip}/8"))
    if gateway:
        items.append((f"{key}.ipv4.gateway", gateway))
    return items


def _network(spec: DomainSpec) -> Items:
    items: Items = []
    net = spec.net
    if net is not None:
        bridge = bridge_name(network_name(net.netvm))
        items += _interface(0, bridge, net.mac, net.ip, net.gateway)
    if spec.provides_network:
        index = 1 if net is not None else 0
        bridge = bridge_name(network_name(spec.name))
        items += _interface(index, bridge, None, spec.ip, None)
    if not items:
        # A network namespace of its own, with no interface.
        items.append(("lxc.net.0.type", "empty"))
    return items


def lxc_config(spec: DomainSpec, log_file: str) -> Items:
    """The liblxc configuration items of *spec*, in order.

    :raises QubesUnsupportedError: a volume that is not a folder
    """
    return [
        ("lxc.uts.name", spec.name),
        ("lxc.init.cmd", init_of(spec)),
        ("lxc.environment", f"QUBES_NAME={spec.name}"),
        ("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed"),
        ("lxc.autodev", "1"),
        ("lxc.tty.max", "0"),
        ("lxc.pty.max", "16"),
        ("lxc.log.file", log_file),
        ("lxc.log.level", "WARN"),
        *_filesystems(spec),
        *_scratch(),
        *_idmap(spec),
        *_network(spec),
    ]
