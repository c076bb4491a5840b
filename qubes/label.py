"""Labels: the coloured frames that tell domains apart on screen."""

from __future__ import annotations

import re

import lxml.etree

from qubes import exc

__all__ = ["Label", "STANDARD_LABELS", "standard_labels"]

#: The eight labels every Qubes system has, by index: (colour, name).
STANDARD_LABELS: dict[int, tuple[str, str]] = {
    1: ("0xcc0000", "red"),
    2: ("0xf57900", "orange"),
    3: ("0xedd400", "yellow"),
    4: ("0x73d216", "green"),
    5: ("0x555555", "gray"),
    6: ("0x3465a4", "blue"),
    7: ("0x75507b", "purple"),
    8: ("0x000000", "black"),
}

_COLOR = re.compile(r"0x[0-9a-fA-F]{6}")
_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class Label:
    """One label: an index, a colour and a name.

    :param index: the number behind ``label-N`` in qubes.xml, at least 1
    :param color: ``0xRRGGBB``
    :param name: a lower-case word, unique in the store
    """

    def __init__(self, index: int, color: str, name: str) -> None:
        if index < 1:
            raise exc.QubesValueError(f"label index {index} is below 1")
        if not _COLOR.fullmatch(color):
            raise exc.QubesValueError(
                f"label {name!r}: colour {color!r} is not 0xRRGGBB"
            )
        if not _NAME.fullmatch(name):
            raise exc.QubesValueError(f"label name {name!r} is not a word")
        self.index = index
        self.color = color
        self.name = name

    def __repr__(self) -> str:
        return f"Label({self.index}, {self.color!r}, {self.name!r})"

    def __str__(self) -> str:
        return self.name

    @property
    def icon(self) -> str:
        """The icon name of domains of this label."""
        return "appvm-" + self.name

    @property
    def color_rgb(self) -> tuple[int, int, int]:
        """The colour as (red, green, blue), 0 to 255 each."""
        value = int(self.color, 16)
        return (value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF

    @classmethod
    def from_xml(cls, node: lxml.etree._Element) -> Label:
        """Read a ``<label id="label-N" color="0x...">name</label>``.

        :raises QubesXMLError: the element is malformed
        """
        ident = node.get("id", "")
        color = node.get("color", "")
        name = (node.text or "").strip()
        try:
            if not ident.startswith("label-"):
                raise ValueError(f"id {ident!r} is not label-N")
            return cls(int(ident[len("label-") :]), color, name)
        except ValueError as err:
            raise exc.QubesXMLError(
                f"malformed label: {err}", line=node.sourceline
            ) from err

    def __xml__(self) -> lxml.etree._Element:
        node = lxml.etree.Element("label")
        node.set("id", f"label-{self.index}")
        node.set("color", self.color)
        node.text = self.name
        return node


def standard_labels() -> dict[int, Label]:
    """A fresh set of the eight standard labels, by index."""
    return {
        index: Label(index, color, name)
        for index, (color, name) in STANDARD_LABELS.items()
    }
