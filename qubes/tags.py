"""Tags: short words attached to a domain, for policy and grouping."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, MutableSet
from sys import intern
from typing import Any

import lxml.etree

from qubes import exc
from qubes.xmlread import elements, text_of

__all__ = ["Tags", "validate_tag"]

_TAG = re.compile(r"[a-zA-Z0-9_.-]+")


def validate_tag(tag: str) -> str:
    """Return *tag* if it is a valid tag name.

    :raises QubesValueError: empty, or a character other than letters,
        digits, ``_``, ``.`` and ``-``
    """
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise exc.QubesValueError(f"invalid tag {tag!r}")
    return tag


class Tags(MutableSet[str]):
    """The tags of one domain, a set that fires events on change.

    Adding fires ``domain-tag-add:TAG``; removing fires
    ``domain-tag-delete:TAG``. Adding a tag already there, or
    discarding one that is not, fires nothing.

    :param subject: the domain the tags belong to
    :param seq: initial tags, added without events
    """

    __slots__ = ("_data", "subject")

    def __init__(self, subject: Any, seq: Iterable[str] = ()) -> None:
        self.subject = subject
        self._data: dict[str, None] = {}
        for tag in seq:
            self._data[validate_tag(tag)] = None

    def __contains__(self, tag: object) -> bool:
        return tag in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Tags({list(self._data)!r})"

    def add(self, tag: str) -> None:
        """Add *tag*; nothing happens when it is already there."""
        validate_tag(tag)
        if tag in self._data:
            return
        self._data[tag] = None
        self.subject.fire_event("domain-tag-add:" + tag, tag=tag)

    def discard(self, tag: str) -> None:
        """Remove *tag* if it is there."""
        if tag not in self._data:
            return
        del self._data[tag]
        self.subject.fire_event("domain-tag-delete:" + tag, tag=tag)

    def remove(self, tag: str) -> None:
        """Remove *tag*.

        :raises QubesTagNotFoundError: the domain does not carry it
        """
        if tag not in self._data:
            raise exc.QubesTagNotFoundError(
                f"no tag {tag!r}", domain=self.subject.location_name()
            )
        self.discard(tag)

    def load(self, element: lxml.etree._Element) -> None:
        """Load ``<tag name="..."/>`` children."""
        data = self._data
        for node in elements(element, "tag"):
            text_of(node)
            name = node.get("name", "")
            try:
                data[intern(validate_tag(name))] = None
            except exc.QubesValueError as err:
                raise exc.QubesXMLError(
                    err.message, line=node.sourceline
                ) from err

    def __xml__(self) -> lxml.etree._Element:
        element = lxml.etree.Element("tags")
        for tag in self._data:
            lxml.etree.SubElement(element, "tag", name=tag)
        return element
