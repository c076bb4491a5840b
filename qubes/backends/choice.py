"""Which backend a store runs its domains on, and why.

In order of precedence:

1. what the caller says (the tools' ``--backend`` and ``--uri``);
2. the environment: ``QUBES_BACKEND`` and ``QUBES_LIBVIRT_URI``;
3. the store's global properties ``vmm_backend`` and ``vmm_uri``;
4. auto-detection: Xen's dom0, then a libvirt daemon that answers with
   QEMU, then the simulated host, whose state file lies beside
   qubes.xml.

A URI alone implies its backend (``qemu:`` is kvm, ``lxc:`` is lxc,
``xen:`` and ``test:`` are xen); a backend alone runs on its default
URI. A ``test:///PATH.xml`` URI is a simulated host keeping its state
in that file; ``test:///default`` is libvirt's test driver as it is,
forgotten when the process ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import libvirt

from qubes import exc
from qubes.backends import get_backend
from qubes.backends.simulated import NodeFile, node_path_of

__all__ = ["Choice", "choose", "backend_for_uri", "NODE_FILE"]

#: the simulated host's state file, in the store's folder
NODE_FILE = "libvirt-node.xml"
#: the dialect of an auto-detected simulated host: the Qubes OS one
SIMULATED_BACKEND = "xen"

_SCHEMES = {"xen": "xen", "qemu": "kvm", "lxc": "lxc", "test": "xen"}
_XEN_CAPABILITIES = "/proc/xen/capabilities"
_LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"


@dataclass(frozen=True)
class Choice:
    """A backend and the reason it was chosen."""

    backend: Any
    reason: str


def backend_for_uri(uri: str) -> str:
    """The backend a libvirt URI implies.

    :raises QubesValueError: the scheme implies none
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    try:
        return _SCHEMES[scheme]
    except KeyError:
        raise exc.QubesValueError(
            f"cannot tell the backend of URI {uri!r}; name it with --backend"
        ) from None


def _make(name: str | None, uri: str | None) -> Any:
    if name is None:
        assert uri is not None
        name = backend_for_uri(uri)
    node = node_path_of(uri) if uri else None
    if node is not None:
        return get_backend(name, state_file=NodeFile(node))
    return get_backend(name, uri)


def _is_xen_dom0() -> bool:
    try:
        with open(_XEN_CAPABILITIES, encoding="ascii") as file:
            return "control_d" in file.read()
    except OSError:
        return False


def _qemu_answers() -> bool:
    # Only a daemon that is already there: opening qemu:///system with
    # no socket would fail slowly, or start a session daemon.
    if not os.path.exists(_LIBVIRT_SOCKET):
        return False
    try:
        conn = libvirt.openReadOnly("qemu:///system")
    except libvirt.libvirtError:
        return False
    try:
        return bool(conn.getType() == "QEMU")
    finally:
        conn.close()


def autodetect(base_dir: str) -> Choice:
    """Xen dom0, else a libvirtd with QEMU, else the simulated host."""
    if _is_xen_dom0():
        return Choice(get_backend("xen"), "auto-detected: this is Xen dom0")
    if _qemu_answers():
        return Choice(
            get_backend("kvm"), "auto-detected: libvirtd answers with QEMU"
        )
    node = NodeFile(os.path.join(base_dir, NODE_FILE))
    return Choice(
        get_backend(SIMULATED_BACKEND, state_file=node),
        "auto-detected: no hypervisor reachable, so the simulated host",
    )


def choose(app: Any, name: str | None = None, uri: str | None = None) -> Choice:
    """The backend *app* uses (see the module's description).

    :raises QubesBackendNotFoundError: a named backend does not exist
    """
    sources = (
        ("the command line", name, uri),
        (
            "the environment",
            os.environ.get("QUBES_BACKEND") or None,
            os.environ.get("QUBES_LIBVIRT_URI") or None,
        ),
        ("qubes.xml", app.vmm_backend, app.vmm_uri),
    )
    for source, chosen_name, chosen_uri in sources:
        if chosen_name or chosen_uri:
            return Choice(_make(chosen_name, chosen_uri), f"set by {source}")
    return autodetect(app.base_dir)
