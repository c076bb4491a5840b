"""Features: free-form string settings of a domain.

Features are how the core, the tools and extensions agree on what a
domain supports or wants (``qrexec``, ``os``, ``service.NAME``...). A
value is always a string: ``True`` is stored as ``"1"`` and ``False`` as
the empty string, which reads as false.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from typing import Any

import lxml.etree

from qubes import exc, generation
from qubes.properties import check_text
from qubes.xmlread import elements, text_of

__all__ = ["Features"]

_NO_DEFAULT = object()


#: features named so enable a service in the guest
SERVICE = "service."
#: what may follow it (as in a qrexec service name)
_SERVICE_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def _feature_value(value: Any) -> str:
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    return str(value)


class Features(MutableMapping[str, str]):
    """The features of one domain, with events.

    Setting fires ``domain-feature-pre-set:NAME`` (may veto) and
    ``domain-feature-set:NAME``; deleting fires
    ``domain-feature-delete:NAME``, each on the domain.

    :param subject: the domain the features belong to
    :param other: initial values, set without events
    """

    __slots__ = ("_data", "subject")

    def __init__(self, subject: Any, other: Any = None) -> None:
        self.subject = subject
        self._data: dict[str, str] = {}
        if other:
            for key, value in dict(other).items():
                self._data[self._check_name(key)] = _feature_value(value)

    @staticmethod
    def _check_name(name: str) -> str:
        if not isinstance(name, str) or not name or name != name.strip():
            raise exc.QubesValueError(f"invalid feature name {name!r}")
        service = name[len(SERVICE) :] if name.startswith(SERVICE) else None
        if service is not None and _SERVICE_NAME.fullmatch(service) is None:
            raise exc.QubesValueError(
                f"invalid feature name {name!r}: a service's name becomes "
                "QubesDB path /qubes-service/NAME, so it is letters, "
                "digits and _ . + - only"
            )
        try:
            return check_text(name)
        except ValueError as err:
            raise exc.QubesValueError(
                f"invalid feature name {name!r}: {err}"
            ) from err

    def __getitem__(self, key: str) -> str:
        try:
            return self._data[key]
        except KeyError:
            raise exc.QubesFeatureNotFoundError(
                f"feature {key!r} is not set", domain=_name(self.subject)
            ) from None

    def __setitem__(self, key: str, value: Any) -> None:
        key = self._check_name(key)
        value = _feature_value(value)
        try:
            check_text(value)
        except ValueError as err:
            raise exc.QubesValueError(
                f"feature {key!r}: invalid value {value!r}: {err}",
                domain=_name(self.subject),
            ) from err
        old = self._data.get(key)
        self.subject.fire_event(
            "domain-feature-pre-set:" + key,
            pre_event=True,
            feature=key,
            value=value,
            oldvalue=old,
        )
        self._data[key] = value
        generation.bump()
        self.subject.fire_event(
            "domain-feature-set:" + key,
            feature=key,
            value=value,
            oldvalue=old,
        )

    def __delitem__(self, key: str) -> None:
        if key not in self._data:
            raise exc.QubesFeatureNotFoundError(
                f"feature {key!r} is not set", domain=_name(self.subject)
            )
        del self._data[key]
        generation.bump()
        self.subject.fire_event("domain-feature-delete:" + key, feature=key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Features({self._data!r})"

    def check_with_template(
        self, feature: str, default: Any = _NO_DEFAULT
    ) -> Any:
        """The feature's value here, else on the template chain.

        :param default: returned when no domain of the chain has it
        :raises QubesFeatureNotFoundError: none has it and no default
        """
        subject = self.subject
        while subject is not None:
            features = subject.features
            if feature in features._data:
                return features._data[feature]
            subject = getattr(subject, "template", None)
        if default is _NO_DEFAULT:
            raise exc.QubesFeatureNotFoundError(
                f"feature {feature!r} is set neither here nor on a template",
                domain=_name(self.subject),
            )
        return default

    def many_with_template(
        self, names: tuple[str, ...]
    ) -> tuple[tuple[str, str], ...]:
        """``(name, value)`` of each of *names* set here or on the
        template chain (as :meth:`check_with_template` finds it), in the
        order of *names*; the chain is walked once."""
        chain = []
        subject = self.subject
        while subject is not None:
            chain.append(subject.features._data)
            subject = getattr(subject, "template", None)
        found = []
        for name in names:
            for data in chain:
                if name in data:
                    found.append((name, data[name]))
                    break
        return tuple(found)

    def load(self, element: lxml.etree._Element) -> None:
        """Load ``<feature name="...">value</feature>`` children.

        :raises QubesXMLError: a feature without a name, or given twice
        """
        data = self._data
        for node in elements(element, "feature"):
            name = node.get("name")
            if not name:
                raise exc.QubesXMLError(
                    "<feature> without a name", line=node.sourceline
                )
            if name in data:
                raise exc.QubesXMLError(
                    f"feature {name!r} given twice", line=node.sourceline
                )
            data[name] = text_of(node)

    def __xml__(self) -> lxml.etree._Element:
        element = lxml.etree.Element("features")
        for name, value in self._data.items():
            node = lxml.etree.SubElement(element, "feature", name=name)
            node.text = value
        return element


def _name(subject: Any) -> str | None:
    name: str | None = subject.location_name()
    return name
