"""Small lxml helpers and elements that every backend's XML shares.

Domain XML is always built element by element with lxml, never from
strings, so that every value is escaped by the serialiser. Elements are
written in libvirt's documented order: identity, memory, CPUs, ``os``,
``features``, ``clock``, lifecycle actions, ``devices``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import lxml.etree
from lxml.etree import _Element as Element

from qubes import exc, generation
from qubes.backends.spec import DomainSpec, NetSpec

__all__ = [
    "Marks",
    "Skeletons",
    "XMLCache",
    "shape",
    "sub",
    "identity",
    "vcpus",
    "clock",
    "lifecycle",
    "hostdevs",
    "serialize",
    "disk_target",
    "image_disks",
    "kernel_boot",
]

#: The fixed places of the Qubes volumes among a domain's disks; other
#: volumes follow in the order the domain lists them.
DISK_ORDER = {"root": 0, "private": 1, "volatile": 2, "kernel": 3}

#: The attributes of a disk's ``<driver>`` from its format and whether it
#: is a block device.
DiskDriver = Callable[[str, bool], dict[str, str]]


def sub(
    parent: Element,
    tag: str,
    text: str | None = None,
    attrib: dict[str, str] | None = None,
) -> Element:
    """Append a child *tag* to *parent*, with optional text and attributes.

    :raises QubesValueError: a value holds characters that XML cannot
        carry at all (control characters); markup characters are fine,
        the serialiser escapes them
    """
    try:
        child = lxml.etree.SubElement(parent, tag, attrib)
        if text is not None:
            child.text = text
    except ValueError as err:
        raise _refuse(tag, err) from err
    return child


#: A per-domain value of a skeleton, from the domain's spec.
Getter = Callable[[DomainSpec], str]


class Slot(NamedTuple):
    """Where a skeleton holds one of each domain's own values.

    :param target: the element, in the skeleton (which is filled in
        place, so the element itself is kept)
    :param attr: the attribute, or None for the element's text
    :param value: the value, from the domain's spec
    """

    target: Element
    attr: str | None
    value: Getter


class Marks:
    """The places, in a tree being built, of the values that every
    domain has its own of (its name, its disks' files...).

    A builder marks such an element instead of setting the value, so
    that the tree can be the skeleton of every domain of its shape.
    """

    def __init__(self) -> None:
        self.slots: list[Slot] = []

    def text(self, target: Element, value: Getter) -> Element:
        """Mark *target*'s text as ``value(spec)``."""
        self.slots.append(Slot(target, None, value))
        return target

    def attr(self, target: Element, name: str, value: Getter) -> Element:
        """Mark *target*'s attribute *name* as ``value(spec)``."""
        self.slots.append(Slot(target, name, value))
        return target


#: the fields of a spec that every domain has its own of: left out of
#: :func:`shape`, and marked by the builders where the XML holds them
OWN_FIELDS = frozenset(("name", "uuid", "qid", "mac", "ip"))


def shape(spec: DomainSpec) -> tuple[Any, ...]:
    """What the structure of *spec*'s XML may depend on: the spec
    without :data:`OWN_FIELDS`, with the disks without their files and
    the net without its addresses; those are left to :class:`Marks`.
    Of an address, only whether there is one counts.
    """
    return (
        spec.klass,
        spec.memory,
        spec.maxmem,
        spec.vcpus,
        spec.virt_mode,
        spec.kernel,
        spec.kernelopts,
        tuple(
            (disk.name, disk.format, disk.rw, disk.path.startswith("/dev/"))
            for disk in spec.disks
        ),
        _net_shape(spec.net),
        spec.provides_network,
        bool(spec.mac),
        bool(spec.ip),
        spec.pci,
        spec.features,
        spec.debug,
    )


def _net_shape(net: NetSpec | None) -> tuple[Any, ...] | None:
    if net is None:
        return None
    return (
        net.netvm,
        net.netvm_qid,
        bool(net.mac),
        bool(net.ip),
        bool(net.gateway),
    )


Builder = Callable[[Marks], Element]


class Skeletons:
    """Whole domain trees, one per shape, each filled in place with a
    domain's own values and serialised.

    Among a thousand AppVMs of one template, the XML differs only in a
    dozen values; building it costs one lxml call per element, filling
    a skeleton one per value. The key must hold everything the tree's
    structure and unmarked values depend on (see :func:`shape`).
    Filling and serialising hold a lock: one skeleton serves every
    thread.

    :param size: how many shapes to keep; then it starts over
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._trees: dict[Any, tuple[Element, tuple[Slot, ...]]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget every skeleton."""
        self._trees.clear()

    def _made(
        self, key: Any, build: Builder
    ) -> tuple[Element, tuple[Slot, ...]]:
        marks = Marks()
        entry = (build(marks), tuple(marks.slots))
        if len(self._trees) >= self.size:
            self._trees.clear()
        self._trees[key] = entry
        return entry

    def xml(self, key: Any, spec: DomainSpec, build: Builder) -> str:
        """The XML of *spec*, from the skeleton of *key*, which
        ``build(marks)`` makes the first time.

        :raises QubesException: what *build* or a value raises
        """
        root, slots = self._trees.get(key) or self._made(key, build)
        with self._lock:
            for target, attr, value in slots:
                try:
                    if attr is None:
                        target.text = value(spec)
                    else:
                        target.set(attr, value(spec))
                except ValueError as err:
                    raise _refuse(target.tag, err) from err
            return serialize(root)


def _refuse(tag: str, err: ValueError) -> exc.QubesValueError:
    return exc.QubesValueError(
        f"<{tag}>: a value cannot be written as XML: {err}"
    )


def set_attr(target: Element, name: str, value: str) -> None:
    """Set an attribute, refusing what XML cannot carry."""
    try:
        target.set(name, value)
    except ValueError as err:
        raise _refuse(target.tag, err) from err


def spec_name(spec: DomainSpec) -> str:
    """The domain's name, for :class:`Marks`."""
    return spec.name


def _uuid(spec: DomainSpec) -> str:
    return spec.uuid


def identity(domain: Element, marks: Marks) -> None:
    """``<name>`` and ``<uuid>``."""
    marks.text(sub(domain, "name"), spec_name)
    marks.text(sub(domain, "uuid"), _uuid)


def vcpus(domain: Element, spec: DomainSpec) -> None:
    """``<vcpu>``: the number of virtual CPUs."""
    sub(domain, "vcpu", str(spec.vcpus), {"placement": "static"})


def spec_mac(spec: DomainSpec) -> str:
    """The domain's own MAC address (a netvm's, on its uplink)."""
    assert spec.mac is not None
    return spec.mac


def spec_ip(spec: DomainSpec) -> str:
    """The domain's own address."""
    assert spec.ip is not None
    return spec.ip


def net_mac(spec: DomainSpec) -> str:
    """The domain's MAC address on its netvm's network."""
    assert spec.net is not None
    return spec.net.mac


def net_ip(spec: DomainSpec) -> str:
    """The domain's address on its netvm's network."""
    assert spec.net is not None and spec.net.ip is not None
    return spec.net.ip


def net_gateway(spec: DomainSpec) -> str:
    """The domain's gateway: its netvm's address."""
    assert spec.net is not None and spec.net.gateway is not None
    return spec.net.gateway


def pty_console(devices: Element, kind: str) -> None:
    """``<console type='pty'>`` with a target of type *kind* (``xen``,
    ``serial``, ``lxc``)."""
    console = sub(devices, "console", None, {"type": "pty"})
    sub(console, "target", None, {"type": kind, "port": "0"})


def clock(domain: Element) -> None:
    """``<clock>``: the guest keeps UTC, reset to the host's at start."""
    sub(domain, "clock", None, {"offset": "utc", "adjustment": "reset"})


def lifecycle(domain: Element) -> None:
    """Power-off, reboot and crash all end the domain: the core decides
    what happens next (a reboot is a new start with a new XML)."""
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        sub(domain, event, "destroy")


def hostdevs(devices: Element, spec: DomainSpec, driver: str = "") -> None:
    """``<hostdev>`` for each assigned PCI device."""
    for pci in spec.pci:
        hostdev = sub(
            devices,
            "hostdev",
            None,
            {"mode": "subsystem", "type": "pci", "managed": "yes"},
        )
        if driver:
            sub(hostdev, "driver", None, {"name": driver})
        source = sub(hostdev, "source")
        sub(
            source,
            "address",
            None,
            {
                "domain": "0x0000",
                "bus": f"0x{pci.bus:02x}",
                "slot": f"0x{pci.slot:02x}",
                "function": f"0x{pci.function:x}",
            },
        )


def kernel_boot(os_element: Element, spec: DomainSpec) -> bool:
    """``<kernel>`` and ``<initrd>`` from the kernel volume; for an HVM
    domain without a kernel, ``<boot dev='hd'>`` instead.

    :returns: whether the domain boots the kernel volume (the caller adds
        its ``<cmdline>``)
    :raises QubesUnsupportedError: a domain that is not HVM has no kernel
    """
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
        return False
    sub(os_element, "kernel", kernel.vmlinuz)
    sub(os_element, "initrd", kernel.initramfs)
    return True


def disk_target(prefix: str, index: int) -> str:
    """The device name of the *index*-th disk: ``xvda``, ``vdb``..."""
    if index >= 26:
        raise exc.QubesUnsupportedError(f"more than 26 {prefix} disks")
    return prefix + chr(ord("a") + index)


def disk_path(index: int) -> Getter:
    """The file of the spec's *index*-th disk, for :class:`Marks`."""
    return lambda spec: spec.disks[index].path


def image_disks(
    devices: Element,
    spec: DomainSpec,
    engine: str,
    target: tuple[str, str],
    driver: DiskDriver,
    marks: Marks,
) -> None:
    """A ``<disk>`` for each of *spec*'s volumes, which must be images.

    :param target: the device name prefix and the bus (``("vd",
        "virtio")``)
    :param driver: the ``<driver>`` attributes for a volume
    :param marks: where each disk's file is marked
    :raises QubesUnsupportedError: a volume is a folder (*engine* names
        the domains that need images in the message)
    """
    prefix, bus = target
    extra = len(DISK_ORDER)
    for position, disk in enumerate(spec.disks):
        index = DISK_ORDER.get(disk.name)
        if index is None:
            index, extra = extra, extra + 1
        if disk.format == "dir":
            raise exc.QubesUnsupportedError(
                f"volume {disk.name!r} is a folder; {engine} domains need"
                " images",
                domain=spec.name,
            )
        block = disk.path.startswith("/dev/")
        element = sub(
            devices,
            "disk",
            None,
            {"type": "block" if block else "file", "device": "disk"},
        )
        sub(element, "driver", None, driver(disk.format, block))
        source = sub(element, "source")
        marks.attr(source, "dev" if block else "file", disk_path(position))
        target_dev = disk_target(prefix, index)
        sub(element, "target", None, {"dev": target_dev, "bus": bus})
        if not disk.rw:
            sub(element, "readonly")


def serialize(root: Element) -> str:
    """The XML text of *root*."""
    return str(lxml.etree.tostring(root, encoding="unicode"))


class XMLCache:
    """The last XML built for each domain, and when it can be reused.

    An entry is reused as it is while the model has not changed at all
    (:mod:`qubes.generation`); after a change, the domain's spec is read
    again and the entry is reused if the spec is equal.

    :param size: how many domains to remember; the oldest go first
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[Any, list[Any]] = OrderedDict()

    def get_unchanged(self, key: Any) -> str | None:
        """The XML of domain *key* if nothing in the model changed."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == generation.current():
            xml: str = entry[2]
            return xml
        return None

    def spec(self, key: Any) -> DomainSpec | None:
        """The spec the XML of domain *key* was last built from."""
        entry = self._entries.get(key)
        return None if entry is None else entry[1]

    def get(self, key: Any, spec: DomainSpec) -> str | None:
        """The XML of domain *key* built from an equal spec, or None."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] == spec:
            entry[0] = generation.current()
            xml: str = entry[2]
            return xml
        return None

    def put(self, key: Any, spec: DomainSpec, xml: str) -> None:
        """Remember *xml* as domain *key*'s, built from *spec*."""
        entries = self._entries
        entries[key] = [generation.current(), spec, xml]
        entries.move_to_end(key)
        if len(entries) > self.size:
            entries.popitem(last=False)
