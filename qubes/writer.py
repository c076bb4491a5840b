"""Writing a store as qubes.xml, one domain at a time.

The document is streamed: each domain's element is built, written and
dropped, so saving needs memory for one domain, not for a second copy of
the whole store. The layout is the reference implementation's (two
spaces per level), so a file that was loaded and saved unchanged is the
same, byte for byte.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import lxml.etree

__all__ = ["write_store"]

INDENT = "  "


def _write_at(xf: Any, element: lxml.etree._Element, level: int) -> None:
    lxml.etree.indent(element, space=INDENT, level=level)
    xf.write("\n" + INDENT * level)
    xf.write(element)


def write_store(app: Any, file: BinaryIO) -> None:
    """Write *app*'s labels, pools, global properties and domains."""
    with (
        lxml.etree.xmlfile(file, encoding="utf-8") as xf,
        xf.element("qubes", app._root_attributes),
    ):
        labels = lxml.etree.Element("labels")
        for label in app.labels.values():
            labels.append(label.__xml__())
        _write_at(xf, labels, 1)
        pools = lxml.etree.Element("pools")
        for pool in app.pools.values():
            pools.append(pool.__xml__())
        _write_at(xf, pools, 1)
        _write_at(xf, app.xml_properties(), 1)
        xf.write("\n" + INDENT)
        with xf.element("domains"):
            for vm in app.domains:
                _write_at(xf, vm.__xml__(), 2)
            xf.write("\n" + INDENT)
        xf.write("\n")
    file.write(b"\n")
