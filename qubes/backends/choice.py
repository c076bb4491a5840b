"""Which backend a store runs its domains on, and why.

In order of precedence:

1. what the caller says (the tools' ``--backend`` and ``--uri``);
2. the environment: ``QUBES_BACKEND`` and ``QUBES_LIBVIRT_URI``;
3. the store's global properties ``vmm_backend`` and ``vmm_uri``;
4. auto-detection: Xen's dom0, then a libvirt daemon that answers with
   QEMU, then the simulated host, whose state file lies beside
   qubes.xml.

The backend and the URI are chosen each on its own: ``--backend kvm``
with ``QUBES_LIBVIRT_URI`` pointing at a simulated host runs the KVM
dialect on that simulated host.

A URI alone implies its backend (``qemu:`` is kvm, ``lxc:`` is lxc,
``xen:`` and ``test:`` are xen); a backend alone runs on its default
URI. A ``test:///PATH.xml`` URI is a simulated host keeping its state
in that file; ``test:///default`` is libvirt's test driver as it is,
forgotten when the process ends.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import libvirt

from qubes import exc
from qubes.backends import get_backend
from qubes.backends.simulated import NodeFile, node_path_of

__all__ = ["check_uri", "Choice", "choose", "backend_for_uri", "NODE_FILE"]

#: the simulated host's state file, in the store's folder
NODE_FILE = "libvirt-node.xml"
#: the dialect of an auto-detected simulated host: the Qubes OS one
SIMULATED_BACKEND = "xen"

_SCHEMES = {
    "xen": "xen",
    "qemu": "kvm",
    "lxc": "lxc",
    "liblxc": "lxc",
    "test": "xen",
}
_XEN_CAPABILITIES = "/proc/xen/capabilities"
_LIBVIRT_SOCKET = "/run/libvirt/libvirt-sock"


@dataclass(frozen=True)
class Choice:
    """A backend and the reason it was chosen."""

    backend: Any
    reason: str


#: what a libvirt URI looks like: a driver (with a transport), a colon,
#: and no space or control character anywhere
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\x00-\x20\x7f]*")


def check_uri(uri: str) -> str:
    """*uri*, if it has the shape of a libvirt URI.

    :raises QubesValueError: it has not (no driver, or a space or a
        control character in it)
    """
    if _URI.fullmatch(uri) is None:
        raise exc.QubesValueError(
            f"not a libvirt URI: {uri!r} (DRIVER[+TRANSPORT]://..., "
            "without spaces)"
        )
    return uri


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


def _make(name: str, uri: str | None) -> Any:
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


def _first(
    sources: list[tuple[str, str | None, str | None]], index: int
) -> tuple[int, str, str | None]:
    for rank, source in enumerate(sources):
        if source[index]:
            return rank, source[0], source[index]
    return len(sources), "", None


def _implied(uri: str) -> str | None:
    # A test: URI takes any dialect; the others say theirs, if known.
    if uri.startswith("test:"):
        return None
    try:
        return backend_for_uri(uri)
    except exc.QubesValueError:
        return None


_HOW_TO_UNSET = {
    "the command line": "give --backend, or another --uri",
    "the environment": "set QUBES_BACKEND, or unset QUBES_LIBVIRT_URI",
    "qubes.xml": "set qubes-prefs vmm_backend, or reset the URI with "
    "qubes-prefs -D vmm_uri",
}


def _unknown_scheme(uri: str, uri_from: str) -> exc.QubesValueError:
    return exc.QubesValueError(
        f"cannot tell the backend of URI {uri!r} (from {uri_from}): "
        f"{_HOW_TO_UNSET.get(uri_from, 'name the backend')}"
    )


def choose(app: Any, name: str | None = None, uri: str | None = None) -> Choice:
    """The backend *app* uses (see the module's description).

    The backend name and the URI are each taken from the first place
    that gives one. Where the two disagree (``--backend lxc`` with a
    ``qemu:`` URI from the environment), the one from the higher place
    wins and the other is dropped; from the same place, it is an error.

    :raises QubesBackendNotFoundError: a named backend does not exist
    :raises QubesValueError: a backend and a URI from one place disagree
    """
    sources = [
        ("the command line", name, uri),
        (
            "the environment",
            os.environ.get("QUBES_BACKEND") or None,
            os.environ.get("QUBES_LIBVIRT_URI") or None,
        ),
        ("qubes.xml", app.vmm_backend, app.vmm_uri),
    ]
    name_rank, name_from, chosen_name = _first(sources, 1)
    uri_rank, uri_from, chosen_uri = _first(sources, 2)
    if chosen_uri is not None:
        check_uri(chosen_uri)
    if chosen_name is None and chosen_uri is None:
        return autodetect(app.base_dir)
    implied = _implied(chosen_uri) if chosen_uri else None
    if chosen_name and implied and implied != chosen_name:
        if name_rank == uri_rank:
            raise exc.QubesValueError(
                f"URI {chosen_uri!r} is not one of the {chosen_name} "
                f"backend (both from {name_from})"
            )
        if name_rank < uri_rank:
            chosen_uri, uri_from = None, ""
        else:
            chosen_name, name_from = None, ""
    if chosen_name and chosen_uri:
        if name_from == uri_from:
            reason = f"set by {name_from}"
        else:
            reason = f"backend set by {name_from}, URI by {uri_from}"
    elif chosen_name:
        reason = f"set by {name_from}, on the backend's own URI"
    else:
        assert chosen_uri is not None
        try:
            chosen_name = backend_for_uri(chosen_uri)
        except exc.QubesValueError:
            raise _unknown_scheme(chosen_uri, uri_from) from None
        reason = f"set by {uri_from}, with the backend its URI implies"
    return Choice(_make(chosen_name, chosen_uri), reason)
