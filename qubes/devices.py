"""Device assignments: which device of which backend domain a domain gets.

Devices are grouped by class (``pci``, ``usb``, ``block``, ...). Each
domain has one :class:`DeviceCollection` per class, created on first use
through ``vm.devices[CLASS]``. Only persistent assignments are kept here
and in qubes.xml; attaching to a running domain is the backend's job.

In qubes.xml an assignment is written as::

    <devices class="pci">
      <device backend-domain="dom0" id="00_14.0">
        <option name="no-strict-reset">True</option>
      </device>
    </devices>

Attributes other than ``backend-domain`` (``id``, and ``port_id``,
``device_id``, ``mode``... of newer Qubes releases) are kept as they were
read, in their order, so that a file round-trips unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import lxml.etree

from qubes import exc, generation
from qubes.xmlread import elements, text_of

__all__ = [
    "DeviceAssignment",
    "DeviceCollection",
    "DeviceManager",
    "pci_address",
]

_CLASS = re.compile(r"[a-z][a-z0-9_-]*")


_PCI = re.compile(r"([0-9a-f]{2})_([0-9a-f]{2})\.([0-9a-f])")


def pci_address(ident: str) -> tuple[int, int, int]:
    """(bus, slot, function) of a PCI device id ``BB_SS.F``.

    :raises QubesDeviceError: not such an id, or out of PCI's ranges
        (slot up to 0x1f, function up to 7)
    """
    found = _PCI.fullmatch(ident)
    if found is not None:
        bus, slot, function = (int(part, 16) for part in found.groups())
        if slot <= 0x1F and function <= 7:
            return bus, slot, function
    raise exc.QubesDeviceError(f"PCI device id {ident!r} is not BB_SS.F")


class DeviceAssignment:
    """One device of a backend domain, assigned to a domain.

    :param backend_domain: the domain that owns the device (a domain
        object; a name while the store is still loading)
    :param ident: the device's id in its backend domain (``00_14.0``)
    :param options: device-class options, strings to strings
    :param attributes: further attributes of the ``<device>`` element
    """

    def __init__(
        self,
        backend_domain: Any,
        ident: str,
        options: dict[str, str] | None = None,
        **attributes: str,
    ) -> None:
        if not ident:
            raise exc.QubesDeviceError("a device assignment needs an id")
        self.backend_domain = backend_domain
        self.ident = ident
        self.options = dict(options or {})
        self.attributes = dict(attributes)

    @property
    def backend_name(self) -> str:
        """The name of the backend domain."""
        backend = self.backend_domain
        return backend if isinstance(backend, str) else backend.name

    @property
    def key(self) -> tuple[str, str]:
        """(backend name, ident): what makes an assignment unique."""
        return self.backend_name, self.ident

    def __repr__(self) -> str:
        return f"DeviceAssignment({self.backend_name!r}, {self.ident!r})"

    @classmethod
    def from_xml(cls, node: lxml.etree._Element) -> DeviceAssignment:
        """Read a ``<device>`` element; the backend stays a name.

        :raises QubesXMLError: no backend domain or no id
        """
        attrs = dict(node.attrib)
        backend = attrs.pop("backend-domain", None)
        ident = attrs.get("id") or attrs.get("port_id")
        if not backend or not ident:
            raise exc.QubesXMLError(
                "<device> needs backend-domain and id", line=node.sourceline
            )
        options = {}
        for opt in elements(node, "option"):
            name = opt.get("name")
            if not name or name in options:
                raise exc.QubesXMLError(
                    "an <option> without a name, or given twice",
                    line=opt.sourceline,
                )
            options[name] = text_of(opt)
        assignment = cls(backend, ident, options)
        assignment.attributes = attrs
        return assignment

    def __xml__(self) -> lxml.etree._Element:
        node = lxml.etree.Element("device")
        node.set("backend-domain", self.backend_name)
        if "id" not in self.attributes and "port_id" not in self.attributes:
            node.set("id", self.ident)
        for name, value in self.attributes.items():
            node.set(name, value)
        for name, value in self.options.items():
            opt = lxml.etree.SubElement(node, "option", name=name)
            opt.text = value
        return node


class DeviceCollection:
    """The persistent assignments of one device class to one domain.

    Assigning fires ``device-pre-assign:CLASS`` (may veto) and
    ``device-assign:CLASS``; unassigning fires ``device-unassign:CLASS``.
    """

    __slots__ = ("_assigned", "devclass", "subject")

    def __init__(self, subject: Any, devclass: str) -> None:
        self.subject = subject
        self.devclass = devclass
        self._assigned: dict[tuple[str, str], DeviceAssignment] = {}

    def __iter__(self) -> Iterator[DeviceAssignment]:
        return iter(self._assigned.values())

    def __len__(self) -> int:
        return len(self._assigned)

    def get_assigned_devices(self) -> list[DeviceAssignment]:
        """Every persistent assignment of this class."""
        return list(self._assigned.values())

    def assign(self, assignment: DeviceAssignment) -> None:
        """Assign a device persistently.

        :raises QubesDeviceError: it is assigned already, or a PCI id is
            malformed
        """
        if self.devclass == "pci":
            pci_address(assignment.ident)
        if assignment.key in self._assigned:
            raise exc.QubesDeviceError(
                f"{self.devclass} device {assignment.ident!r} of "
                f"{assignment.backend_name!r} is assigned already",
                domain=self.subject.location_name(),
            )
        event = self.devclass
        self.subject.fire_event(
            "device-pre-assign:" + event, pre_event=True, device=assignment
        )
        self._assigned[assignment.key] = assignment
        generation.bump()
        self.subject.fire_event("device-assign:" + event, device=assignment)

    def unassign(self, backend_name: str, ident: str) -> DeviceAssignment:
        """Remove an assignment and return it.

        :raises QubesDeviceError: no such assignment
        """
        assignment = self._assigned.pop((backend_name, ident), None)
        generation.bump()
        if assignment is None:
            raise exc.QubesDeviceError(
                f"{self.devclass} device {ident!r} of {backend_name!r} "
                "is not assigned",
                domain=self.subject.location_name(),
            )
        self.subject.fire_event(
            "device-unassign:" + self.devclass, device=assignment
        )
        return assignment

    def load(self, element: lxml.etree._Element) -> None:
        """Load the ``<device>`` children of a ``<devices>`` element."""
        for node in elements(element, "device"):
            assignment = DeviceAssignment.from_xml(node)
            if assignment.key in self._assigned:
                raise exc.QubesXMLError(
                    f"{self.devclass} device {assignment.ident!r} "
                    "assigned twice",
                    line=node.sourceline,
                )
            self._assigned[assignment.key] = assignment

    def resolve(self, domains: Any) -> None:
        """Turn backend names read from XML into domain objects.

        :raises QubesVMNotFoundError: a backend domain does not exist
        """
        for assignment in self._assigned.values():
            if isinstance(assignment.backend_domain, str):
                assignment.backend_domain = domains[assignment.backend_domain]

    def __xml__(self) -> lxml.etree._Element:
        element = lxml.etree.Element("devices")
        element.set("class", self.devclass)
        for assignment in self._assigned.values():
            element.append(assignment.__xml__())
        return element


class DeviceManager(dict[str, DeviceCollection]):
    """``vm.devices``: device class name to :class:`DeviceCollection`.

    Looking up a class that has no collection yet creates an empty one,
    so ``vm.devices['pci']`` always works.
    """

    __slots__ = ("subject",)

    def __init__(self, subject: Any) -> None:
        super().__init__()
        self.subject = subject

    def __missing__(self, devclass: str) -> DeviceCollection:
        if not isinstance(devclass, str) or not _CLASS.fullmatch(devclass):
            raise exc.QubesDeviceError(f"invalid device class {devclass!r}")
        collection = DeviceCollection(self.subject, devclass)
        self[devclass] = collection
        return collection

    def load(self, element: lxml.etree._Element) -> None:
        """Load one ``<devices class="...">`` element."""
        devclass = element.get("class", "")
        try:
            collection = self[devclass]
        except exc.QubesDeviceError as err:
            raise exc.QubesXMLError(
                err.message, line=element.sourceline
            ) from err
        collection.load(element)

    def referring_to(self, vm: Any) -> list[str]:
        """Descriptions of the assignments whose backend is *vm*."""
        return [
            f"{devclass} device {a.ident}"
            for devclass, collection in self.items()
            for a in collection
            if a.backend_domain is vm
        ]
