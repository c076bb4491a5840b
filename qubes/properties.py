"""Typed properties with defaults, validation and events.

A :class:`Property` is a descriptor declared on a :class:`PropertyHolder`
subclass (a domain, or the store itself). Its value lives in the holder's
``_property_values`` dictionary; a property that is absent there is
*unset* and reads as its default, which may be a value or a callable of
the holder. Unset is distinct from ``None``: a property may be explicitly
set to ``None`` (saved as an empty element) while another is unset (not
saved at all).

Setting a property coerces the value (its ``type``, then its ``setter``,
which validates and may raise), fires ``property-pre-set:NAME`` (a
handler may veto by raising), stores it and fires ``property-set:NAME``.
Assigning :data:`DEFAULT` or deleting the attribute resets it and fires
``property-pre-reset:NAME`` and ``property-reset:NAME``.

Loading from XML goes through :meth:`Property.load`, which coerces the
text but fires nothing: the store loads with events off, in stages (see
:attr:`Property.load_stage`), so references between domains resolve
only once every domain exists.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import lxml.etree

from qubes import exc, generation
from qubes.events import Emitter
from qubes.xmlread import elements, text_of

__all__ = [
    "bounded",
    "check_text",
    "MAX_MEMORY",
    "MAX_VCPUS",
    "MAX_SECONDS",
    "DEFAULT",
    "Property",
    "PropertyHolder",
    "parse_bool",
    "stage_name",
]


class _DefaultMarker:
    """Type of :data:`DEFAULT`."""

    _instance: _DefaultMarker | None = None

    def __new__(cls) -> _DefaultMarker:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"


#: Assign this to a property to reset it to its default.
DEFAULT = _DefaultMarker()

_NO_DEFAULT = object()

#: Load stages: 2 for plain values of domains, 3 for the store's global
#: properties (they may name domains), 4 for domain properties that name
#: other domains, loaded once every domain exists.
STAGES = {2: "values", 3: "global", 4: "references"}


def stage_name(stage: int) -> str:
    """A short word for a load stage, for messages."""
    return STAGES.get(stage, str(stage))


_TRUE = frozenset(("1", "yes", "true", "on"))
_FALSE = frozenset(("0", "no", "false", "off"))


def parse_bool(value: Any) -> bool:
    """Coerce True/False/1/0 and yes/no/on/off/true/false to a bool.

    :raises ValueError: anything else, including the empty string
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"not a boolean: {value!r}")


# What XML 1.0 cannot carry at all: most control characters, lone
# surrogates (what undecodable command-line bytes become) and two
# non-characters.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check_text(value: str) -> str:
    """Return *value* if qubes.xml (and libvirt XML) can hold it.

    :raises ValueError: it has a control character or an invalid code
        point
    """
    found = _NOT_XML.search(value)
    if found:
        raise ValueError(
            f"character U+{ord(found.group()):04X} cannot be stored"
        )
    return value


def bounded(low: int, high: int) -> Setter:
    """A setter that accepts integers from *low* to *high*."""

    def check(holder: Any, prop: Property, value: int) -> int:
        if not low <= value <= high:
            raise exc.QubesPropertyValueError(
                f"{value} is out of range {low}..{high}", value=value
            )
        return value

    check.__name__ = f"bounded_{low}_{high}"
    return check


#: the largest memory size, MiB: 16 TiB, far beyond any host here, well
#: inside what libvirt takes
MAX_MEMORY = 16 * 1024 * 1024
#: the most vCPUs a domain may have (libvirt's and Xen's order of size)
MAX_VCPUS = 4096
#: the longest timeout, seconds: a year
MAX_SECONDS = 365 * 24 * 3600


def _to_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


Setter = Callable[[Any, "Property", Any], Any]
#: a property read from XML, loaded at a later stage: (prop, text, line)
Deferred = tuple["Property", str, "int | None"]
Saver = Callable[[Any, "Property", Any], str]


class Property:
    """A typed property of a :class:`PropertyHolder`.

    :param name: the property's name; by default the attribute's name
    :param type: a callable that coerces a raw value (``bool`` parses
        the usual words, ``int``, ``str``, :class:`uuid.UUID`, ...)
    :param setter: ``setter(holder, prop, value) -> value``: validates
        (raise :class:`ValueError` or a :mod:`qubes.exc` error) and may
        transform the value; it runs after ``type``
    :param saver: ``saver(holder, prop, value) -> str`` for the XML
    :param default: a value, or a callable of the holder; none means the
        property must be set before it is read
    :param write_once: once set (or loaded), it cannot change
    :param load_stage: when the store loads it (see :data:`STAGES`)
    :param doc: one line for ``qvm-prefs --help-properties`` and docs
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        type: Callable[[Any], Any] | None = None,
        setter: Setter | None = None,
        saver: Saver | None = None,
        default: Any = _NO_DEFAULT,
        write_once: bool = False,
        load_stage: int = 2,
        doc: str = "",
    ) -> None:
        self.__name__ = name or ""
        self._type = parse_bool if type is bool else type
        self._setter = setter
        self._saver = saver
        self._default = default
        self.write_once = write_once
        self.load_stage = load_stage
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        if not self.__name__:
            self.__name__ = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__name__}>"

    @property
    def has_default(self) -> bool:
        """Whether an unset value reads as a default."""
        return self._default is not _NO_DEFAULT

    def get_default(self, holder: Any) -> Any:
        """The value an unset property reads as.

        :raises QubesPropertyAccessError: there is no default
        """
        default = self._default
        if default is _NO_DEFAULT:
            raise exc.QubesPropertyAccessError(
                "not set and has no default",
                domain=_holder_name(holder),
                prop=self.__name__,
            )
        if not callable(default):
            return default
        # A computed default follows from the model alone: it is kept
        # until the model changes (qubes.generation), so that reading a
        # domain's defaults, and its template's, costs one computation.
        memo = holder._default_memo
        now = generation.value
        if memo is None or memo[0] != now:
            memo = holder._default_memo = (now, {})
        values = memo[1]
        name = self.__name__
        if name in values:
            return values[name]
        value = values[name] = default(holder)
        return value

    def __get__(self, holder: Any, owner: type | None = None) -> Any:
        if holder is None:
            return self
        # Not try/except KeyError: most reads of a domain are of defaults,
        # and raising costs more than the lookup.
        name = self.__name__
        value = holder._property_values.get(name, _NO_DEFAULT)
        if value is not _NO_DEFAULT:
            return value
        # The computed default of this generation, if there is one yet.
        memo = holder._default_memo
        if memo is not None and memo[0] == generation.value:
            value = memo[1].get(name, _NO_DEFAULT)
            if value is not _NO_DEFAULT:
                return value
        return self.get_default(holder)

    def coerce(self, holder: Any, value: Any) -> Any:
        """Apply ``type`` then ``setter``; errors name the property.

        :raises QubesPropertyValueError: the value is refused
        """
        try:
            if self._type is not None:
                value = self._type(value)
            if self._setter is not None:
                value = self._setter(holder, self, value)
            if isinstance(value, str):
                check_text(value)
        except exc.QubesException as err:
            err.locate(domain=_holder_name(holder), prop=self.__name__)
            raise
        except (ValueError, TypeError) as err:
            raise exc.QubesPropertyValueError(
                f"invalid value {value!r}: {_why(self._type, err)}",
                value=value,
                domain=_holder_name(holder),
                prop=self.__name__,
            ) from err
        return value

    def __set__(self, holder: Any, value: Any) -> None:
        if value is DEFAULT:
            self.__delete__(holder)
            return
        self._store(holder, self.coerce(holder, value))

    def _check_writable(self, holder: Any) -> None:
        if self.write_once and self.__name__ in holder._property_values:
            raise exc.QubesPropertyAccessError(
                "is write-once and already set",
                domain=_holder_name(holder),
                prop=self.__name__,
            )

    def _old_value(self, holder: Any) -> Any:
        try:
            return self.__get__(holder)
        except AttributeError:
            return None

    def _store(self, holder: Any, value: Any) -> None:
        self._check_writable(holder)
        generation.bump()
        name = self.__name__
        values = holder._property_values
        if not holder.events_enabled:
            values[name] = value
            return
        old = self._old_value(holder)
        holder.fire_event(
            "property-pre-set:" + name,
            pre_event=True,
            name=name,
            newvalue=value,
            oldvalue=old,
        )
        values[name] = value
        holder.fire_event(
            "property-set:" + name, name=name, newvalue=value, oldvalue=old
        )

    def __delete__(self, holder: Any) -> None:
        self._check_writable(holder)
        name = self.__name__
        values = holder._property_values
        if not holder.events_enabled:
            generation.bump()
            values.pop(name, None)
            return
        if not self.has_default:
            raise exc.QubesPropertyAccessError(
                "has no default to return to; set another value instead",
                domain=_holder_name(holder),
                prop=name,
            )
        self._check_default(holder)
        generation.bump()
        old = self._old_value(holder)
        holder.fire_event(
            "property-pre-reset:" + name,
            pre_event=True,
            name=name,
            oldvalue=old,
        )
        values.pop(name, None)
        holder.fire_event("property-reset:" + name, name=name, oldvalue=old)

    def _check_default(self, holder: Any) -> None:
        # Resetting is setting the default: the setter's checks apply.
        if self._setter is None or not self.has_default:
            return
        name = self.__name__
        values = holder._property_values
        current = values.pop(name, _NO_DEFAULT)
        try:
            default = self.get_default(holder)
        finally:
            if current is not _NO_DEFAULT:
                values[name] = current
        self.coerce(holder, default)

    def load(self, holder: Any, text: str) -> None:
        """Set the property from its XML text, firing no event.

        :raises QubesXMLError: the property appears twice
        :raises QubesPropertyValueError: the text is refused
        """
        if self.__name__ in holder._property_values:
            raise exc.QubesXMLError(
                "given twice", domain=_holder_name(holder), prop=self.__name__
            )
        holder._property_values[self.__name__] = self.coerce(holder, text)

    def save(self, holder: Any) -> str | None:
        """The XML text of the value, or ``None`` when unset."""
        try:
            value = holder._property_values[self.__name__]
        except KeyError:
            return None
        if self._saver is not None:
            return self._saver(holder, self, value)
        return _to_str(value)

    def refers_to(self, holder: Any, target: Any) -> bool:
        """Whether the explicitly set value is *target* (for references)."""
        return holder._property_values.get(self.__name__) is target


def _why(kind: Any, err: Exception) -> str:
    # Python's own words for a failed int() are about its literal syntax.
    if kind is int and str(err).startswith("invalid literal"):
        return "not a whole number"
    return str(err)


def _holder_name(holder: Any) -> str | None:
    """The holder's name for error messages, if it has one yet."""
    name: str | None = holder.location_name()
    return name


def uuid_type(value: Any) -> uuid.UUID:
    """Coerce a string or :class:`uuid.UUID` to a UUID."""
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


class PropertyHolder(Emitter):
    """An object with :class:`Property` attributes.

    Subclasses get two class-level indexes, built once when the class is
    created: properties by name, and the same sorted by load stage and
    name (the order in which they are saved).
    """

    _property_index: ClassVar[dict[str, Property]] = {}
    _property_order: ClassVar[tuple[Property, ...]] = ()
    #: (model generation, computed defaults by name), see get_default
    _default_memo: tuple[int, dict[str, Any]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        index: dict[str, Property] = {}
        for klass in reversed(cls.__mro__):
            for attr in klass.__dict__.values():
                if isinstance(attr, Property):
                    index[attr.__name__] = attr
        cls._property_index = index
        cls._property_order = tuple(
            sorted(index.values(), key=lambda p: (p.load_stage, p.__name__))
        )

    def __init__(self) -> None:
        self._property_values: dict[str, Any] = {}

    @classmethod
    def property_list(cls) -> tuple[Property, ...]:
        """All properties, in load stage then name order."""
        return cls._property_order

    @classmethod
    def property_get_def(cls, name: str) -> Property:
        """The :class:`Property` called *name*.

        :raises QubesNoSuchPropertyError: there is none
        """
        try:
            return cls._property_index[name]
        except KeyError:
            raise exc.QubesNoSuchPropertyError(
                f"no such property {name!r}"
            ) from None

    def location_name(self) -> str | None:
        """How errors name this holder: a domain's name, if loaded."""
        name = self._property_values.get("name")
        return None if name is None else str(name)

    def property_is_default(self, name: str) -> bool:
        """Whether *name* is unset (reads as its default)."""
        self.property_get_def(name)
        return name not in self._property_values

    def property_get_default(self, name: str) -> Any:
        """The default of *name*, whether or not it is set."""
        return self.property_get_def(name).get_default(self)

    def property_keep_default(self, name: str) -> None:
        """Make *name*'s current default its explicit value (saved from
        then on), without events: nothing changes but its origin."""
        prop = self.property_get_def(name)
        if name not in self._property_values:
            self._property_values[name] = prop.get_default(self)
            generation.bump()

    def property_reset(self, name: str) -> None:
        """Reset *name* to its default, firing the reset events."""
        self.property_get_def(name).__delete__(self)

    def property_set(self, name: str, value: Any) -> None:
        """Set *name* to *value* (a string is coerced as from XML)."""
        self.property_get_def(name).__set__(self, value)

    def load_properties(self, element: Any, load_stage: int) -> list[Deferred]:
        """Load the ``<property>`` children of *element* of *load_stage*.

        :returns: the properties of later stages, to be given to
            :meth:`load_deferred` when their stage comes
        :raises QubesNoSuchPropertyError: an unknown property name
        :raises QubesXMLError: a child that is not a ``<property>``
        """
        index = self._property_index
        deferred: list[Deferred] = []
        for node in elements(element, "property"):
            name = node.get("name")
            prop = index.get(name) if name else None
            if prop is None:
                raise exc.QubesNoSuchPropertyError(
                    f"no such property {name!r}",
                    domain=_holder_name(self),
                )
            text = text_of(node)
            if prop.load_stage > load_stage:
                deferred.append((prop, text, node.sourceline))
            else:
                self._load_one(prop, text, node.sourceline)
        return deferred

    def load_deferred(self, deferred: Iterable[Deferred]) -> None:
        """Load properties that :meth:`load_properties` put aside."""
        for prop, text, line in deferred:
            self._load_one(prop, text, line)

    def _load_one(self, prop: Property, text: str, line: int | None) -> None:
        try:
            prop.load(self, text)
        except exc.QubesXMLError as err:
            err.line = err.line or line
            raise

    def xml_properties(
        self, props: Iterable[Property] | None = None
    ) -> lxml.etree._Element:
        """A ``<properties>`` element holding every set property."""
        element = lxml.etree.Element("properties")
        for prop in props if props is not None else self._property_order:
            text = prop.save(self)
            if text is not None:
                node = lxml.etree.SubElement(element, "property")
                node.set("name", prop.__name__)
                node.text = text
        return element


def _article(noun: str) -> str:
    return ("an " if noun[:1] in "AEIOU" else "a ") + noun


class VMProperty(Property):
    """A property whose value is another domain (or ``None``).

    It accepts a domain object or its name; the empty string means
    ``None`` where that is allowed. It is saved as the domain's name and,
    by default, loaded at stage 4, once every domain exists.

    :param vmclass: the class the domain must be an instance of
    :param allow_none: whether ``None`` (saved as ``""``) is accepted
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        vmclass: type | None = None,
        allow_none: bool = False,
        load_stage: int = 4,
        **kwargs: Any,
    ) -> None:
        if "type" in kwargs or "saver" in kwargs:
            raise TypeError("VMProperty sets its own type and saver")
        super().__init__(name, load_stage=load_stage, **kwargs)
        self.vmclass = vmclass
        self.allow_none = allow_none

    def coerce(self, holder: Any, value: Any) -> Any:
        try:
            value = self._lookup(holder, value)
        except exc.QubesException as err:
            err.locate(domain=_holder_name(holder), prop=self.__name__)
            raise
        return super().coerce(holder, value)

    def _lookup(self, holder: Any, value: Any) -> Any:
        if value is None or value == "":
            if not self.allow_none:
                raise exc.QubesPropertyValueError(
                    "must name a domain", value=value
                )
            return None
        domains = getattr(holder, "app", holder).domains
        vm = domains[value]
        if self.vmclass is not None and not isinstance(vm, self.vmclass):
            raise exc.QubesPropertyValueError(
                f"{vm.name!r} is {_article(type(vm).__name__)}, "
                f"not {_article(self.vmclass.__name__)}",
                value=value,
            )
        return vm

    def save(self, holder: Any) -> str | None:
        try:
            value = holder._property_values[self.__name__]
        except KeyError:
            return None
        return "" if value is None else str(value.name)
