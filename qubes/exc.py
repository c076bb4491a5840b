"""Exceptions of the :mod:`qubes` package.

Every error the package raises on purpose is a :class:`QubesException`.
Where a caller would naturally expect a builtin (a missing domain is a
:class:`KeyError`, a bad value a :class:`ValueError`) the exception is
also that builtin, so ``except KeyError`` keeps working.

An error may carry where it happened: the store file, the domain and the
property. The loader fills those in as an error passes through it, so the
message of an error raised deep in a setter still names the file.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "QubesException",
    "QubesValueError",
    "QubesPropertyValueError",
    "QubesNoSuchPropertyError",
    "QubesPropertyAccessError",
    "QubesVMInvalidNameError",
    "QubesDuplicateError",
    "QubesUnknownClassError",
    "QubesLabelNotFoundError",
    "QubesVMNotFoundError",
    "QubesFeatureNotFoundError",
    "QubesTagNotFoundError",
    "QubesDeviceError",
    "QubesXMLError",
    "QubesStoreError",
    "QubesStoreNotFoundError",
    "QubesConcurrentWriteError",
    "QubesVMError",
    "QubesVMInUseError",
    "QubesVMNotStartedError",
    "QubesVMNotRunningError",
    "QubesVMNotHaltedError",
    "QubesVMNotPausedError",
    "QubesVMAlreadyRunningError",
    "QubesVMShutdownTimeoutError",
    "QubesBackendError",
    "QubesBackendNotFoundError",
    "QubesNoSuchDomainError",
    "QubesUnsupportedError",
    "QubesConnectionError",
    "QubesStorageError",
]


class QubesException(Exception):
    """Base of every error raised by :mod:`qubes`.

    :param message: what went wrong, in one line
    :param path: the store file the error is about, if any
    :param domain: the name (or id) of the domain concerned, if any
    :param prop: the property concerned, if any
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        domain: str | None = None,
        prop: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.domain = domain
        self.prop = prop

    def locate(
        self,
        path: str | None = None,
        domain: str | None = None,
        prop: str | None = None,
    ) -> QubesException:
        """Fill in the location fields that are still unknown.

        :returns: the exception itself, so it can be re-raised at once
        """
        self.path = self.path or path
        self.domain = self.domain or domain
        self.prop = self.prop or prop
        return self

    def __str__(self) -> str:
        parts = []
        if self.path:
            parts.append(self.path)
        if self.domain:
            parts.append(f"domain {self.domain!r}")
        if self.prop:
            parts.append(f"property {self.prop!r}")
        parts.append(self.message)
        return ": ".join(parts)


class QubesValueError(QubesException, ValueError):
    """A value is not acceptable."""


class QubesPropertyValueError(QubesValueError):
    """A property was given a value it refuses.

    :param value: the refused value
    """

    def __init__(self, message: str, *, value: Any = None, **kw: Any):
        super().__init__(message, **kw)
        self.value = value


class QubesNoSuchPropertyError(QubesException, AttributeError):
    """A property name that the holder does not have."""


class QubesPropertyAccessError(QubesException, AttributeError):
    """A property cannot be read (unset, no default) or changed now."""


class QubesVMInvalidNameError(QubesValueError):
    """A domain name that breaks the naming rules."""


class QubesDuplicateError(QubesValueError):
    """A second domain with the same qid, name or UUID."""


class QubesUnknownClassError(QubesValueError):
    """A domain class (or pool driver) that nothing provides."""


class QubesLabelNotFoundError(QubesException, KeyError):
    """A label that the store does not define."""

    __str__ = QubesException.__str__


class QubesVMNotFoundError(QubesException, KeyError):
    """No domain by that name, qid or UUID."""

    __str__ = QubesException.__str__


class QubesFeatureNotFoundError(QubesException, KeyError):
    """A feature that is not set on the domain (nor its template)."""

    __str__ = QubesException.__str__


class QubesTagNotFoundError(QubesException, KeyError):
    """A tag the domain does not carry."""

    __str__ = QubesException.__str__


class QubesDeviceError(QubesValueError):
    """A device assignment that is malformed or conflicts."""


class QubesXMLError(QubesException):
    """The store file is not well-formed XML or not of the expected shape.

    :param line: the line of the file, when known
    """

    def __init__(self, message: str, *, line: int | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.line = line

    def __str__(self) -> str:
        text = super().__str__()
        if self.line is not None and self.path:
            return text.replace(self.path, f"{self.path}:{self.line}", 1)
        return text


class QubesStoreError(QubesException):
    """The store file cannot be read or written."""


class QubesStoreNotFoundError(QubesStoreError, FileNotFoundError):
    """There is no store file at the given path."""

    __str__ = QubesException.__str__


class QubesConcurrentWriteError(QubesStoreError):
    """Another writer changed the store since it was loaded."""


class QubesVMError(QubesException):
    """An operation on a domain failed.

    :param vm: the domain (anything with a ``name``), or ``None``
    """

    def __init__(self, vm: Any, message: str, **kw: Any) -> None:
        name = getattr(vm, "name", None)
        kw.setdefault("domain", name if name is not None else None)
        super().__init__(message, **kw)
        self.vm = vm


class QubesVMInUseError(QubesVMError):
    """The domain is still referred to, or still in use."""


class QubesVMNotStartedError(QubesVMError):
    """The domain is not started (it is halted)."""


class QubesVMNotRunningError(QubesVMNotStartedError):
    """The domain is not running (halted, paused or crashed)."""


class QubesVMNotHaltedError(QubesVMError):
    """The domain is not halted, and the operation needs it halted."""


class QubesVMNotPausedError(QubesVMNotStartedError):
    """The domain is not paused."""


class QubesVMAlreadyRunningError(QubesVMNotHaltedError):
    """The domain is already running."""


class QubesVMShutdownTimeoutError(QubesVMError):
    """The domain did not shut down in the time it was given."""


class QubesBackendError(QubesException):
    """The hypervisor backend reported an error."""


class QubesBackendNotFoundError(QubesBackendError, KeyError):
    """No backend is registered under that name."""

    __str__ = QubesException.__str__


class QubesNoSuchDomainError(QubesBackendError, KeyError):
    """The engine has no definition of the domain."""

    __str__ = QubesException.__str__


class QubesUnsupportedError(QubesBackendError, NotImplementedError):
    """The backend (or its engine) cannot do what was asked."""


class QubesConnectionError(QubesBackendError, ConnectionError):
    """The hypervisor cannot be reached, or the connection was lost."""


class QubesStorageError(QubesException):
    """A storage pool or volume operation failed."""
