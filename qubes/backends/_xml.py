"""Small lxml helpers and elements that every backend's XML shares.

Domain XML is always built element by element with lxml, never from
strings, so that every value is escaped by the serialiser. Elements are
written in libvirt's documented order: identity, memory, CPUs, ``os``,
``features``, ``clock``, lifecycle actions, ``devices``.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import lxml.etree
from lxml.etree import _Element as Element

from qubes import exc, generation
from qubes.backends.spec import DomainSpec

__all__ = [
    "Parts",
    "XMLCache",
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
_DISK_SOURCE = 1  # <disk>: driver, source, target

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


class Parts:
    """Subtrees that many domains share, built once and copied.

    Among a thousand AppVMs of one template, the ``<os>`` element, the
    features, the lifecycle actions and the console are the same, and
    every disk differs only in its file. A builder asks for a copy of a
    part by the values it depends on; the first request builds it.
    Copying a built subtree is one call into lxml where building it is
    one call per element. Where a copy differs from domain to domain (a
    disk's file), the caller sets that value on the copy; parts are built
    so that such a child sits at a fixed index.

    :param size: how many distinct parts to keep; then it starts over
    """

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._parts: dict[tuple[Any, ...], Element] = {}

    def copy(
        self, key: tuple[Any, ...], build: Callable[[], Element]
    ) -> Element:
        """A copy of the part *key*, built by ``build()`` the first time."""
        part = self._parts.get(key)
        if part is None:
            if len(self._parts) >= self.size:
                self._parts.clear()
            part = self._parts[key] = build()
        # lxml's copy is deep; copy.deepcopy() would only add a detour.
        return part.__copy__()


def _refuse(tag: str, err: ValueError) -> exc.QubesValueError:
    return exc.QubesValueError(
        f"<{tag}>: a value cannot be written as XML: {err}"
    )


def set_text(target: Element, text: str) -> None:
    """Set *target*'s text, refusing what XML cannot carry."""
    try:
        target.text = text
    except ValueError as err:
        raise _refuse(target.tag, err) from err


def set_attr(target: Element, name: str, value: str) -> None:
    """Set an attribute, refusing what XML cannot carry."""
    try:
        target.set(name, value)
    except ValueError as err:
        raise _refuse(target.tag, err) from err


def element(
    tag: str, text: str | None = None, attrib: dict[str, str] | None = None
) -> Element:
    """A new element *tag*, not attached to a parent."""
    made = lxml.etree.Element(tag, attrib)
    if text is not None:
        set_text(made, text)
    return made


def identity(domain: Element, spec: DomainSpec) -> None:
    """``<name>`` and ``<uuid>``."""
    sub(domain, "name", spec.name)
    sub(domain, "uuid", spec.uuid)


def vcpus(domain: Element, spec: DomainSpec) -> None:
    """``<vcpu>``: the number of virtual CPUs."""
    sub(domain, "vcpu", str(spec.vcpus), {"placement": "static"})


def _clock() -> Element:
    return element("clock", None, {"offset": "utc", "adjustment": "reset"})


def clock(domain: Element) -> None:
    """``<clock>``: the guest keeps UTC, reset to the host's at start."""
    domain.append(_SHARED.copy(("clock",), _clock))


def lifecycle(domain: Element) -> None:
    """Power-off, reboot and crash all end the domain: the core decides
    what happens next (a reboot is a new start with a new XML)."""
    for event in ("on_poweroff", "on_reboot", "on_crash"):
        domain.append(
            _SHARED.copy((event,), functools.partial(_destroy, event))
        )


def _destroy(event: str) -> Element:
    return element(event, "destroy")


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


def _disk(
    driver: DiskDriver, bus: str, fmt: str, block: bool, target: str, rw: bool
) -> Element:
    disk = element(
        "disk", None, {"type": "block" if block else "file", "device": "disk"}
    )
    sub(disk, "driver", None, driver(fmt, block))
    sub(disk, "source")
    sub(disk, "target", None, {"dev": target, "bus": bus})
    if not rw:
        sub(disk, "readonly")
    return disk


def image_disks(
    devices: Element,
    spec: DomainSpec,
    engine: str,
    target: tuple[str, str],
    driver: DiskDriver,
    parts: Parts,
) -> None:
    """A ``<disk>`` for each of *spec*'s volumes, which must be images.

    :param target: the device name prefix and the bus (``("vd",
        "virtio")``)
    :param driver: the ``<driver>`` attributes for a volume
    :param parts: the backend's cache of elements, for one empty
        ``<disk>`` per shape
    :raises QubesUnsupportedError: a volume is a folder (*engine* names
        the domains that need images in the message)
    """
    prefix, bus = target
    extra = len(DISK_ORDER)
    for disk in spec.disks:
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
        shape = (disk.format, block, disk_target(prefix, index), disk.rw)
        copy = parts.copy(
            ("disk", prefix, *shape),
            functools.partial(_disk, driver, bus, *shape),
        )
        set_attr(copy[_DISK_SOURCE], "dev" if block else "file", disk.path)
        devices.append(copy)


def serialize(root: Element) -> str:
    """The XML text of *root*."""
    return str(lxml.etree.tostring(root, encoding="unicode"))


_SHARED = Parts()


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
