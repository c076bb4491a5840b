"""Reading qubes.xml into a store, in stages, one domain at a time.

The file is parsed as a stream: each ``<domain>`` element is turned into
a domain object as soon as it ends, then dropped, so memory grows with
the domain objects only, never with a second copy of the whole document.
The stages (see :mod:`qubes.app`) are kept: domains are built with their
plain values first; the global properties and then every property that
names another domain are loaded once all domains exist.

Sections must come in the order the reference implementation writes
them: ``<labels>`` and ``<pools>`` before ``<domains>``.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import lxml.etree

from qubes import exc
from qubes.label import Label, standard_labels
from qubes.storage import make_pool
from qubes.vm.mix.net import netvm_chain
from qubes.xmlread import elements, text_of

__all__ = ["StoreLoader"]

SECTIONS = ("labels", "pools", "properties", "domains")


def _what(node: Any) -> str:
    if isinstance(node, lxml.etree._Entity):
        return f"entity reference {node.text}"
    return f"<{node.tag}>"


def _no_text_after(node: Any) -> None:
    if node.tail and node.tail.strip():
        raise exc.QubesXMLError(
            f"unexpected text after <{node.tag}>", line=node.sourceline
        )


class StoreLoader:
    """Loads one qubes.xml stream into an empty store.

    :param app: the store (:class:`qubes.app.Qubes`), still empty
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.vms: list[Any] = []
        self._global_properties: Any = None
        self._seen: set[str] = set()
        self._domains_started = False

    def load(self, file: BinaryIO) -> None:
        """Load every stage from *file*.

        :raises QubesException: the document is invalid; the error names
            the domain and property, the caller adds the file
        """
        events = lxml.etree.iterparse(
            file,
            events=("end",),
            tag=("domain", *SECTIONS),
            remove_blank_text=True,
            resolve_entities=False,
            no_network=True,
        )
        root = None
        for _, element in events:
            parent = element.getparent()
            if element.tag == "domain" and parent is not None:
                if parent.tag == "domains":
                    self._domain(element)
                    _no_text_after(element)
                    parent.remove(element)
            elif parent is not None and parent.getparent() is None:
                root = parent
                self._section(element)
        if root is None:
            root = events.root
        if root.getroottree().docinfo.doctype:
            raise exc.QubesXMLError(
                "a document type declaration is not allowed in qubes.xml",
                line=1,
            )
        self._check_root(root)
        self._finish()

    def _check_root(self, root: Any) -> None:
        if root.tag != "qubes":
            raise exc.QubesXMLError(
                f"the root element is <{root.tag}>, not <qubes>", line=1
            )
        for node in root:
            if isinstance(node, lxml.etree._Entity) or (
                isinstance(node.tag, str) and node.tag not in SECTIONS
            ):
                raise exc.QubesXMLError(
                    f"unexpected {_what(node)} in <qubes>",
                    line=node.sourceline,
                )
            _no_text_after(node)
        if root.text and root.text.strip():
            raise exc.QubesXMLError("unexpected text in <qubes>", line=1)
        domains = root.find("domains")
        if domains is not None:
            # Every <domain> was taken out as it was read: what is left
            # would be lost.
            for node in elements(domains, "domain"):
                raise exc.QubesXMLError(
                    "unexpected <domain>", line=node.sourceline
                )
        self.app._root_attributes = dict(root.attrib)

    def _section(self, element: Any) -> None:
        tag = element.tag
        if tag in self._seen:
            raise exc.QubesXMLError(
                f"<{tag}> given twice", line=element.sourceline
            )
        if tag in ("labels", "pools") and self._domains_started:
            raise exc.QubesXMLError(
                f"<{tag}> must come before <domains>", line=element.sourceline
            )
        self._seen.add(tag)
        if tag == "labels":
            self._labels(element)
        elif tag == "pools":
            self._pools(element)
        elif tag == "properties":
            self._global_properties = element

    def _labels(self, element: Any) -> None:
        labels = self.app.labels
        for node in elements(element, "label"):
            text_of(node)
            label = Label.from_xml(node)
            for other in labels.values():
                if other.index == label.index or other.name == label.name:
                    raise exc.QubesXMLError(
                        f"label {label.name!r} defined twice",
                        line=node.sourceline,
                    )
            labels[label.index] = label
        element.clear()

    def _pools(self, element: Any) -> None:
        pools = self.app.pools
        for node in elements(element, "pool"):
            text_of(node)
            config = dict(node.attrib)
            name = config.pop("name", "")
            if not name or not config.get("driver"):
                raise exc.QubesXMLError(
                    "<pool> needs a name and a driver", line=node.sourceline
                )
            if name in pools:
                raise exc.QubesXMLError(
                    f"pool {name!r} defined twice", line=node.sourceline
                )
            pools[name] = make_pool(name, config)
        element.clear()

    def _domain(self, node: Any) -> None:
        if not self._domains_started:
            self._domains_started = True
            if "labels" not in self._seen:
                self.app.labels.update(standard_labels())
        where = node.get("id") or f"line {node.sourceline}"
        try:
            cls = self.app.get_vm_class(node.get("class", ""))
            vm = cls(self.app, node)
            vm.require_properties(2)
            self.app.domains.add(vm)
        except exc.QubesException as err:
            if isinstance(err, exc.QubesXMLError) and err.line is None:
                err.line = node.sourceline
            name = node.xpath("string(properties/property[@name='name'])")
            err.locate(domain=name or where)
            raise
        self.vms.append(vm)

    def _finish(self) -> None:
        app = self.app
        if not app.labels:
            app.labels.update(standard_labels())
        if 0 not in app.domains:
            raise exc.QubesXMLError("no AdminVM (dom0) domain")
        if self._global_properties is not None:
            app.load_deferred(app.load_properties(self._global_properties, 3))
        for vm in self.vms:
            self._in_domain(vm, vm.load_references)
        for vm in self.vms:
            self._in_domain(vm, self._check_domain, vm)
        app.events_enabled = True
        for vm in self.vms:
            vm.events_enabled = True
            vm.fire_event("domain-init")
            vm.fire_event("domain-load")

    @staticmethod
    def _in_domain(vm: Any, func: Any, *args: Any) -> None:
        try:
            func(*args)
        except exc.QubesException as err:
            err.locate(domain=vm.location_name())
            raise

    @staticmethod
    def _check_domain(vm: Any) -> None:
        vm.require_properties(4)
        if hasattr(vm, "netvm"):
            netvm_chain(vm)
