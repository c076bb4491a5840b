"""Reading qubes.xml strictly: what cannot be kept is refused, not lost.

A store is read into objects and written back from them, so anything
the objects do not hold would silently disappear at the next save: an
unknown element, text between elements, an entity reference, markup in
a value. Such documents are refused with the element's line instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import lxml.etree
from lxml.etree import _Element as Element

from qubes import exc

__all__ = ["elements", "text_of"]


def _no_text(where: str, text: str | None, line: int | None) -> None:
    if text and text.strip():
        raise exc.QubesXMLError(
            f"unexpected text {text.strip()[:40]!r} in <{where}>", line=line
        )


def elements(parent: Element, tag: str) -> Iterator[Element]:
    """The children of *parent*, each a ``<tag>``.

    Comments are skipped; any other element, an entity reference or
    text between the children is an error.

    :raises QubesXMLError: naming the element and its line
    """
    where = parent.tag
    _no_text(where, parent.text, parent.sourceline)
    for node in parent:
        if isinstance(node, lxml.etree._Entity):
            raise exc.QubesXMLError(
                f"entity reference {node.text} in <{where}>: qubes.xml "
                "holds no entities",
                line=node.sourceline,
            )
        if node.tag is not lxml.etree.Comment and node.tag != tag:
            if not isinstance(node.tag, str):
                continue  # a processing instruction
            raise exc.QubesXMLError(
                f"unexpected <{node.tag}> in <{where}>", line=node.sourceline
            )
        _no_text(where, node.tail, node.sourceline)
        if node.tag == tag:
            yield node


def text_of(node: Element) -> str:
    """The text of an element that holds text only.

    :raises QubesXMLError: it holds elements, entities or comments,
        whose content would be lost
    """
    if len(node):
        raise exc.QubesXMLError(
            f"<{node.tag} name={node.get('name')!r}> must hold text only",
            line=node.sourceline,
        )
    return node.text or ""
