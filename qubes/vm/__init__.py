"""The base of every domain: properties, qubes.xml (de)serialisation, hooks.

:class:`BaseVM` is the programmer's class: it knows how a domain is read
from and written to its ``<domain>`` element, holds the collections a
domain carries (features, tags, devices, volume configuration) and gives
the hook to the backend's libvirt XML. The security-relevant behaviour
(what starts, what is exposed to a domain) is in
:class:`qubes.vm.qubesvm.QubesVM`.

Loading happens in two steps called by the store: :meth:`BaseVM.__init__`
with the element reads every plain value (stage 2), and
:meth:`BaseVM.load_references` later reads the properties that name
other domains (stage 4), once every domain exists.
"""

from __future__ import annotations

import logging
import re
import uuid as uuid_module
from collections.abc import Sequence
from sys import intern
from typing import Any

import lxml.etree

from qubes import exc
from qubes.devices import DeviceManager
from qubes.features import Features
from qubes.properties import (
    Deferred,
    Property,
    PropertyHolder,
    VMProperty,
    uuid_type,
)
from qubes.storage import Storage, Volume
from qubes.tags import Tags
from qubes.xmlread import elements, text_of

__all__ = ["BaseVM", "validate_name", "MAX_NAME_LENGTH", "MAX_QID"]

#: namespace of the UUIDs given to stored domains that had none
_STORED_UUID = uuid_module.UUID("9c2a3d1e-5b7f-4e0a-8f6d-2c4b1a7e3f90")

#: Xen limits a domain name to 31 characters (plus the final NUL).
MAX_NAME_LENGTH = 31
#: qids map onto the last two bytes of 10.137.x.y addresses.
MAX_QID = 65535

_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_.-]*")
# 'none' and 'default' mean "no domain" and "the default" to the tools;
# Domain-0 is Xen's own name for dom0; '-dm' names Xen's device-model
# stub domains.
_RESERVED = frozenset(("none", "default", "domain-0"))


def validate_name(name: Any) -> str:
    """Return *name* if it is a valid domain name.

    :raises QubesVMInvalidNameError: it breaks a naming rule; the
        message says which
    """
    if not isinstance(name, str) or not name:
        raise exc.QubesVMInvalidNameError(f"invalid name {name!r}: empty")
    if len(name) > MAX_NAME_LENGTH:
        raise exc.QubesVMInvalidNameError(
            f"invalid name {name!r}: longer than {MAX_NAME_LENGTH} characters"
        )
    if not _NAME.fullmatch(name):
        raise exc.QubesVMInvalidNameError(
            f"invalid name {name!r}: must start with a letter and hold only "
            "letters, digits, '_', '.' and '-'"
        )
    if name.lower() in _RESERVED:
        raise exc.QubesVMInvalidNameError(f"invalid name {name!r}: reserved")
    if name.endswith("-dm"):
        raise exc.QubesVMInvalidNameError(
            f"invalid name {name!r}: must not end in '-dm'"
        )
    return name


def _setter_name(vm: Any, prop: Property, value: Any) -> str:
    return validate_name(value)


def _setter_qid(vm: Any, prop: Property, value: int) -> int:
    if not 0 <= value <= MAX_QID:
        raise exc.QubesPropertyValueError(
            f"qid {value} is out of range 0..{MAX_QID}", value=value
        )
    return value


def _setter_label(vm: Any, prop: Property, value: Any) -> Any:
    return vm.app.get_label(value)


def _save_label(vm: Any, prop: Property, value: Any) -> str:
    return str(value.name)


class BaseVM(PropertyHolder):
    """A domain: its properties and what it carries.

    :param app: the store (:class:`qubes.app.Qubes`) it belongs to
    :param xml: the ``<domain>`` element it is loaded from, or ``None``
        for a new domain
    :param features: initial features (new domain)
    :param devices: initial assignments, device class to a list of
        :class:`~qubes.devices.DeviceAssignment` (new domain)
    :param tags: initial tags (new domain)
    :param kwargs: initial property values (new domain)
    """

    # Write-once, as on Qubes: a domain's name is in its volumes' paths
    # and its engine definition; qvm-clone and qvm-remove rename.
    name = Property(
        setter=_setter_name,
        write_once=True,
        doc="The domain's name, unique; it cannot change.",
    )
    qid = Property(
        type=int,
        setter=_setter_qid,
        write_once=True,
        doc="Persistent identifier in the store (not the runtime id).",
    )
    uuid = Property(
        type=uuid_type,
        write_once=True,
        doc="UUID of the domain, also its libvirt UUID.",
    )
    label = Property(
        setter=_setter_label,
        saver=_save_label,
        doc="The colour of the domain's window frames.",
    )

    def __init__(
        self,
        app: Any,
        xml: lxml.etree._Element | None,
        features: dict[str, Any] | None = None,
        devices: dict[str, list[Any]] | None = None,
        tags: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.app = app
        self.features = Features(self, features)
        self.tags = Tags(self, tags or ())
        self.devices = DeviceManager(self)
        for devclass, assignments in (devices or {}).items():
            for assignment in assignments:
                self.devices[devclass].assign(assignment)
        self.volume_config: dict[str, dict[str, str]] = {}
        self.storage = Storage(self)
        self._log: logging.Logger | None = None
        self._deferred: Sequence[Deferred] = ()
        self._xml = xml
        if xml is not None:
            self._load_values(xml)
        for key, value in kwargs.items():
            self.property_set(key, value)
        if "uuid" not in self._property_values and self.uuid_is_generated:
            self.uuid = self._new_uuid(xml is not None)
        self._xml = None
        if xml is None:
            self.events_enabled = True
            self.fire_event("domain-init")

    #: whether a domain without a stored UUID gets one
    uuid_is_generated = True

    def _new_uuid(self, loaded: bool) -> uuid_module.UUID:
        # A new domain gets a random UUID. One read from a qubes.xml that
        # has none gets the same UUID in every process until it is
        # saved, from its qid and name: the engine knows a domain by it.
        if not loaded:
            return uuid_module.uuid4()
        return uuid_module.uuid5(
            _STORED_UUID, f"{self._property_values.get('qid')}:{self.name}"
        )

    def __repr__(self) -> str:
        return f"<{self.klass} {self.location_name()}>"

    def __str__(self) -> str:
        return str(self.name)

    def __lt__(self, other: Any) -> bool:
        if isinstance(other, BaseVM):
            return bool(self.name < other.name)
        return NotImplemented

    @property
    def xml(self) -> lxml.etree._Element:
        """The domain's ``<domain>`` element.

        While the domain is being built from qubes.xml, the element it is
        read from; afterwards a fresh element of its current state (the
        store does not keep the document it loaded, to keep memory
        proportional to the domains).
        """
        if self._xml is not None:
            return self._xml
        return self.__xml__()

    @property
    def klass(self) -> str:
        """The domain's class name, as in qubes.xml."""
        return type(self).__name__

    @property
    def volumes(self) -> dict[str, Volume]:
        """The domain's volumes, by name (``root``, ``private``...)."""
        return self.storage.volumes

    @property
    def log(self) -> logging.Logger:
        """The domain's logger, ``vm.NAME``."""
        if self._log is None:
            self.init_log()
        assert self._log is not None
        return self._log

    def init_log(self) -> None:
        """(Re)create :attr:`log` for the current name."""
        self._log = logging.getLogger("vm." + str(self.name))

    # -- qubes.xml ------------------------------------------------------

    def _load_values(self, xml: lxml.etree._Element) -> None:
        """Stage 2: plain properties and every collection."""
        seen: set[str] = set()
        for node in xml:
            tag = node.tag
            if isinstance(node, lxml.etree._Entity) or (
                isinstance(tag, str) and tag != "devices" and tag in seen
            ):
                raise exc.QubesXMLError(
                    f"<{tag}> given twice, or an entity, in <domain>",
                    line=node.sourceline,
                )
            if isinstance(tag, str):
                seen.add(tag)
            if node.tail and node.tail.strip():
                raise exc.QubesXMLError(
                    "unexpected text in <domain>", line=node.sourceline
                )
            if tag == "properties":
                self._deferred = self.load_properties(node, 2)
            elif tag == "features":
                self.features.load(node)
            elif tag == "tags":
                self.tags.load(node)
            elif tag == "devices":
                self.devices.load(node)
            elif tag == "volume-config":
                self._load_volume_config(node)
            elif isinstance(tag, str):
                raise exc.QubesXMLError(
                    f"unexpected <{tag}> in <domain>", line=node.sourceline
                )

    def _load_volume_config(self, element: lxml.etree._Element) -> None:
        for node in elements(element, "volume"):
            text_of(node)
            name = node.get("name")
            if not name:
                raise exc.QubesXMLError(
                    "<volume> without a name", line=node.sourceline
                )
            if name in self.volume_config:
                raise exc.QubesXMLError(
                    f"volume {name!r} configured twice", line=node.sourceline
                )
            # Most attribute values repeat from domain to domain (True,
            # False, pool names, sizes); sharing them keeps a large store
            # small in memory.
            self.volume_config[name] = {
                intern(key): intern(value) for key, value in node.attrib.items()
            }

    def load_references(self) -> None:
        """Stage 4: properties naming other domains, device backends."""
        self.load_deferred(self._deferred)
        self._deferred = ()
        for collection in self.devices.values():
            collection.resolve(self.app.domains)

    def __xml__(self) -> lxml.etree._Element:
        element = lxml.etree.Element("domain")
        element.set("id", f"domain-{self.qid}")
        element.set("class", self.klass)
        element.append(self.xml_properties())
        element.append(self.features.__xml__())
        for collection in self.devices.values():
            if len(collection):
                element.append(collection.__xml__())
        element.append(self.tags.__xml__())
        if self.volume_config:
            volumes = lxml.etree.SubElement(element, "volume-config")
            for config in self.volume_config.values():
                lxml.etree.SubElement(volumes, "volume", config)
        return element

    def require_properties(self, load_stage: int) -> None:
        """Check that every property up to *load_stage* has a value.

        :raises QubesPropertyAccessError: a property without a default
            is unset, or a domain reference that may not be empty is
        """
        for prop in self.property_list():
            if prop.load_stage > load_stage:
                break
            name = prop.__name__
            if name in self._property_values:
                continue
            if not prop.has_default:
                raise exc.QubesPropertyAccessError(
                    "is required but not set",
                    domain=self.location_name(),
                    prop=name,
                )
            required_vm = isinstance(prop, VMProperty) and not prop.allow_none
            if required_vm and prop.get_default(self) is None:
                raise exc.QubesPropertyAccessError(
                    "is not set, and its global default is empty",
                    domain=self.location_name(),
                    prop=name,
                )

    def references_to(self, vm: BaseVM) -> list[str]:
        """Where this domain refers to *vm*: property names and devices."""
        found = [
            prop.__name__
            for prop in self.property_list()
            if prop.refers_to(self, vm)
        ]
        found.extend(self.devices.referring_to(vm))
        return found
