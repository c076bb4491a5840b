"""QubesDB, host side: the small key-value store a domain reads its
configuration from (``/name``, ``/qubes-ip``...) and the host watches.

On Qubes, qubesdb is a daemon per domain; here it is a protocol,
:class:`QubesDB`, with an in-process implementation, :class:`LocalQubesDB`,
for backends that have no qubesdb daemon (all three built-in ones). A
local database lives as long as its domain runs and is not seen by the
guest: a guest agent that reads QubesDB needs a daemon this package does
not provide.

Paths are absolute (``/a/b``); a path ending in ``/`` names every entry
below it, for :meth:`QubesDB.rm`, :meth:`QubesDB.list` and watches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from qubes import exc

__all__ = ["QubesDB", "LocalQubesDB", "WatchCallback"]

#: called with the path that changed
WatchCallback = Callable[[str], None]


class QubesDB(Protocol):
    """What the host needs of a domain's QubesDB."""

    def read(self, path: str) -> bytes | None:
        """The value at *path*, or None."""

    def write(self, path: str, value: bytes | str) -> None:
        """Set *path* to *value*."""

    def write_many(self, entries: dict[str, str]) -> None:
        """Set several paths at once."""

    def rm(self, path: str) -> None:
        """Remove *path*, or everything below it if it ends in ``/``."""

    def list(self, prefix: str = "/") -> list[str]:
        """Every path that starts with *prefix*, sorted."""

    def watch(self, path: str, callback: WatchCallback) -> None:
        """Call *callback* with the changed path whenever *path* (or,
        ending in ``/``, anything below it) is written or removed."""

    def close(self) -> None:
        """Forget every entry and watch."""


def _check(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise exc.QubesValueError(f"QubesDB path {path!r} is not absolute")
    if "\0" in path or "//" in path:
        raise exc.QubesValueError(f"invalid QubesDB path {path!r}")
    return path


def _covers(watched: str, path: str) -> bool:
    if watched.endswith("/"):
        return path.startswith(watched)
    return path == watched


class LocalQubesDB:
    """An in-process QubesDB for one domain.

    :param name: the domain's name, for messages
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._data: dict[str, bytes] = {}
        self._watches: list[tuple[str, WatchCallback]] = []

    def __repr__(self) -> str:
        return f"<LocalQubesDB {self.name} {len(self._data)} entries>"

    def read(self, path: str) -> bytes | None:
        """The value at *path*, or None."""
        return self._data.get(_check(path))

    def write(self, path: str, value: bytes | str) -> None:
        """Set *path* to *value* (a str is stored as UTF-8)."""
        if _check(path).endswith("/"):
            raise exc.QubesValueError(f"cannot write a folder: {path!r}")
        if isinstance(value, str):
            value = value.encode()
        self._data[path] = bytes(value)
        self._notify(path)

    def write_many(self, entries: dict[str, str]) -> None:
        """Set several paths at once (a domain's entries at start)."""
        values = {}
        for path, value in entries.items():
            # _check()'s tests, inline: a domain's start writes a dozen.
            if (
                not isinstance(path, str)
                or path[:1] != "/"
                or path[-1:] == "/"
                or "\0" in path
                or "//" in path
            ):
                _check(path)
                raise exc.QubesValueError(f"cannot write a folder: {path!r}")
            values[path] = value.encode()
        self._data.update(values)
        if self._watches:
            for path in values:
                self._notify(path)

    def rm(self, path: str) -> None:
        """Remove *path*, or everything below it if it ends in ``/``."""
        if _check(path).endswith("/"):
            gone = [p for p in self._data if p.startswith(path)]
        else:
            gone = [path] if path in self._data else []
        for key in gone:
            del self._data[key]
            self._notify(key)

    def list(self, prefix: str = "/") -> list[str]:
        """Every path that starts with *prefix*, sorted."""
        _check(prefix)
        return sorted(p for p in self._data if p.startswith(prefix))

    def watch(self, path: str, callback: WatchCallback) -> None:
        """Call *callback* on changes at (or below) *path*."""
        self._watches.append((_check(path), callback))

    def _notify(self, path: str) -> None:
        for watched, callback in list(self._watches):
            if _covers(watched, path):
                callback(path)

    def close(self) -> None:
        """Forget every entry and watch."""
        self._data.clear()
        self._watches.clear()
