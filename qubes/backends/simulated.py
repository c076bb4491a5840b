"""The simulated host: libvirt's test driver, with its state in a file.

libvirt's test driver runs in-process and accepts Xen, KVM and LXC
domain XML alike; it forgets everything when the process ends. The
simulated host keeps that state in a node file (libvirt's test-driver
node format): ``test:///PATH`` loads the file, and after every change
the file is written back with each domain's inactive definition and its
state (``<test:runstate>``). So ``qvm-start work`` in one process and
``qvm-ls`` in the next agree. Domains run transient (see
``LibvirtBackend.start``), which the format cannot say: each is marked
``<qubes:transient/>``, and made transient again in the next process,
so a stop there leaves no definition either.

Changes are serialised between processes like qubes.xml's: under a lock
file, the node file is replaced atomically, and a process whose view is
older than the file reloads it before it changes anything.

Nothing runs on a simulated host, and its disks are simulated too:
volumes are described in the XML but not created or checked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

import libvirt
import lxml.etree

from qubes import exc
from qubes.store import FileStamp, StoreFile

__all__ = ["NodeFile", "QUBES_NS", "TEST_NS", "node_path_of"]

log = logging.getLogger(__name__)

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
_RUNSTATE = f"{{{TEST_NS}}}runstate"
#: this package's mark on a domain that ran transient (the test driver
#: ignores elements of namespaces it does not know)
QUBES_NS = "urn:x-qubes:simulated-host"
_TRANSIENT = f"{{{QUBES_NS}}}transient"

#: the simulated machine: 2 cores, 8 GiB
_HOST = {
    "cpu": (
        ("nodes", "1"),
        ("sockets", "1"),
        ("cores", "2"),
        ("threads", "1"),
        ("active", "2"),
        ("mhz", "2000"),
        ("model", "x86_64"),
    ),
    "memory": "8388608",
}


def node_path_of(uri: str) -> str | None:
    """The node file of a ``test:///PATH`` URI; None for ``default``."""
    if not uri.startswith("test:///"):
        return None
    path = uri[len("test://") :]
    if path in ("/", "/default") or not path.endswith(".xml"):
        return None
    return path


class NodeFile:
    """A test-driver node file that holds a simulated host's state.

    :param path: the file; it is created, empty, when first needed
    """

    def __init__(self, path: str) -> None:
        self.store = StoreFile(path)
        self._loaded: FileStamp | None = None
        #: UUIDs of the domains the file marks transient
        self._transient: set[str] = set()
        self._thread_lock = threading.RLock()
        self._depth = 0

    @property
    def path(self) -> str:
        """The node file."""
        return self.store.path

    @property
    def uri(self) -> str:
        """The libvirt URI that loads this file."""
        return "test://" + self.path

    def exists(self) -> bool:
        """Whether the file exists (a host that never ran anything)."""
        return os.path.exists(self.path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # flock() is per open file: taking it twice in one process would
        # wait for ever, so nested uses share the outer one.
        with self._thread_lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self.store.lock():
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0

    def before_open(self) -> None:
        """Create the file if missing, check it if not; remember the
        version opened.

        :raises QubesStoreError: the file is not a state file of this
            package's
        """
        with self._lock():
            if not self.exists():
                self._write(_empty_node())
                self._transient = set()
            else:
                self._transient = _check_node_file(self.path)
            self._loaded = _stamp(self.path)

    def after_open(self, conn: libvirt.virConnect) -> None:
        """Make the domains that ran transient transient again: the test
        driver loads every domain of the file with a definition, and
        undefining a running domain leaves it running, transient."""
        for uuid in self._transient:
            try:
                conn.lookupByUUIDString(uuid).undefine()
            except libvirt.libvirtError as err:
                # A definition left is only a halted domain's, harmless.
                log.warning("%s: domain %s: %s", self.path, uuid, err)

    def refresh(self, connection: Any) -> None:
        """Reopen *connection* if another process changed the file
        since it was loaded, so that it reads the newest state."""
        if self._loaded != _stamp(self.path):
            with self._lock():
                if self._loaded != _stamp(self.path):
                    connection.reset()

    @contextlib.contextmanager
    def transaction(self, connection: Any) -> Iterator[None]:
        """Hold the lock around a change and write the state after it.

        If another process changed the file since *connection* loaded
        it, the connection is reopened first, so it acts on the newest
        state.
        """
        with self._lock():
            if connection.is_open and self._loaded != _stamp(self.path):
                connection.reset()
            conn = connection.call("open", lambda c: c)
            try:
                yield
            finally:
                self._write(_node_of(conn))

    def _write(self, node: lxml.etree._Element) -> None:
        data = lxml.etree.tostring(node, pretty_print=True)

        def writer(file: BinaryIO) -> None:
            file.write(data)

        self.store.stamp = _stamp(self.path)
        self.store.write_locked(writer)
        self._loaded = self.store.stamp


#: what a state file holds: the host, and its domains and networks
_NODE_PARTS = frozenset(("cpu", "memory", "domain", "network"))


def _check_node_file(path: str) -> set[str]:
    """Check the file is one of this module's; the UUIDs of the domains
    it marks transient."""
    # libvirt's test driver follows <domain file='...'/> and friends to
    # any file on the host, and quotes what it cannot parse: only a file
    # of the shape this module writes is handed to it.
    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        tree = lxml.etree.parse(path, parser)
    except lxml.etree.XMLSyntaxError as err:
        raise _not_ours(path, err.msg) from err
    except OSError as err:
        raise exc.QubesStoreError(
            "cannot read the simulated host's state file: "
            + (err.strerror or str(err).splitlines()[0]),
            path=path,
        ) from err
    root = tree.getroot()
    if tree.docinfo.doctype or root.tag != "node":
        # Likely another file named by mistake (qubes.xml itself): it
        # is no one's to remove.
        raise exc.QubesStoreError(
            "not a simulated host's state file: it is not a <node> "
            "document; check the URI (a simulated host keeps its state in "
            "its own file, libvirt-node.xml beside qubes.xml by default)",
            path=path,
        )
    transient = set()
    for part in root:
        if not isinstance(part.tag, str):
            continue
        if part.tag not in _NODE_PARTS or "file" in part.attrib:
            raise _not_ours(
                path, f"it holds <{part.tag}> (line {part.sourceline})"
            )
        if part.find(_TRANSIENT) is not None:
            transient.add(part.findtext("uuid", "").strip())
    return transient


def _not_ours(path: str, why: str) -> exc.QubesStoreError:
    return exc.QubesStoreError(
        f"not a simulated host's state file: {why}; remove it to start "
        "afresh, with every domain halted",
        path=path,
    )


def _stamp(path: str) -> FileStamp:
    try:
        return FileStamp.of(os.stat(path))
    except FileNotFoundError:
        return FileStamp.of(None)


def _empty_node() -> lxml.etree._Element:
    node = lxml.etree.Element("node")
    cpu = lxml.etree.SubElement(node, "cpu")
    for tag, text in _HOST["cpu"]:
        lxml.etree.SubElement(cpu, tag).text = text
    lxml.etree.SubElement(node, "memory").text = str(_HOST["memory"])
    return node


def _node_of(conn: libvirt.virConnect) -> lxml.etree._Element:
    node = _empty_node()
    for dom in conn.listAllDomains():
        xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        domain = lxml.etree.fromstring(xml.encode())
        # The namespace must be declared on <domain> itself for the test
        # driver to read the run state back.
        with_ns = lxml.etree.Element(
            domain.tag,
            dict(domain.attrib),
            nsmap={"test": TEST_NS, "qubes": QUBES_NS},
        )
        with_ns.extend(list(domain))
        lxml.etree.SubElement(with_ns, _RUNSTATE).text = str(dom.state()[0])
        if not dom.isPersistent():
            lxml.etree.SubElement(with_ns, _TRANSIENT)
        node.append(with_ns)
    return node
