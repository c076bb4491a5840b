"""Turning ``libvirt.libvirtError`` into :mod:`qubes.exc` errors.

This is the only place that reads libvirt error codes. libvirt reports
"not running" and "already running" with the same code (operation
invalid); which one it is follows from the operation that failed, so
every call names its operation.
"""

from __future__ import annotations

from typing import Any

import libvirt

from qubes import exc

__all__ = ["translate", "is_connection_lost", "first_line"]

#: operations whose "operation invalid" means the domain does not run
_NEEDS_RUNNING = frozenset(
    ("destroy", "shutdown", "suspend", "stats", "resume", "reboot")
)
#: operations whose "operation invalid" means the domain runs already
_NEEDS_HALTED = frozenset(("create", "undefine"))

_CONNECTION_CODES = frozenset(
    (
        libvirt.VIR_ERR_NO_CONNECT,
        libvirt.VIR_ERR_INVALID_CONN,
        libvirt.VIR_ERR_RPC,
    )
)
_UNSUPPORTED_CODES = frozenset(
    (
        libvirt.VIR_ERR_NO_SUPPORT,
        libvirt.VIR_ERR_CONFIG_UNSUPPORTED,
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    )
)


def first_line(err: libvirt.libvirtError) -> str:
    """libvirt's message, without the context lines some messages carry
    (a parser's excerpt and caret)."""
    text = err.get_error_message() or str(err)
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def is_connection_lost(err: libvirt.libvirtError) -> bool:
    """Whether *err* means the connection to the engine is gone."""
    return (
        err.get_error_code() in _CONNECTION_CODES
        or err.get_error_domain() == libvirt.VIR_FROM_RPC
    )


def translate(
    err: libvirt.libvirtError, op: str, uri: str, vm: Any = None
) -> exc.QubesException:
    """The :mod:`qubes.exc` error that *err* means for operation *op*.

    :param op: what was attempted (``create``, ``destroy``, ``lookup``...)
    :param uri: the connection's URI, for the message
    :param vm: the domain concerned, if any
    """
    code = err.get_error_code()
    message = f"{op}: {first_line(err)}"
    if is_connection_lost(err):
        return exc.QubesConnectionError(f"{uri}: {message}")
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return exc.QubesNoSuchDomainError(
            f"{uri} has no such domain", domain=_name(vm)
        )
    text = message.lower()
    if op in _NEEDS_HALTED and (
        "already running" in text or "already active" in text
    ):
        return exc.QubesVMAlreadyRunningError(vm, "is already running")
    # Some drivers (the test driver's suspend, shutdown and resume) say
    # it in words, with "internal error" as the code.
    if op == "resume" and ("not paused" in text or "not running" in text):
        return exc.QubesVMNotPausedError(vm, "is not paused")
    if op in _NEEDS_RUNNING and "not running" in text:
        return exc.QubesVMNotRunningError(vm, "is not running")
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        if op == "resume":
            return exc.QubesVMNotPausedError(vm, "is not paused")
        if op in _NEEDS_RUNNING:
            return exc.QubesVMNotRunningError(vm, "is not running")
        if op in _NEEDS_HALTED:
            return exc.QubesVMAlreadyRunningError(vm, "is already running")
    if code in _UNSUPPORTED_CODES:
        return exc.QubesUnsupportedError(f"{uri}: {message}", domain=_name(vm))
    return exc.QubesBackendError(f"{uri}: {message}", domain=_name(vm))


def _name(vm: Any) -> str | None:
    name = getattr(vm, "name", None)
    return None if name is None else str(name)
