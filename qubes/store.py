"""The qubes.xml file on disk: reading it, and replacing it safely.

A save never leaves a half-written file: the new document goes to a
temporary file in the same folder, which is flushed to disk, renamed over
the old one, and the folder itself is flushed so the rename survives a
crash. Writers take an advisory lock on a lock file beside the store
(``qubes.xml.lock``; the store file itself cannot carry the lock, since
each save replaces it).

A reader remembers which version of the file it read (device, inode,
size and modification time of the very file it opened). Before a save
replaces the file, under the lock, that identity is checked again: if
another writer replaced the file in between, the save is refused instead
of silently undoing the other writer's change.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import lxml.etree

from qubes import exc

__all__ = ["FileStamp", "StoreFile", "default_store_path"]

SYSTEM_PATH = "/var/lib/qubes/qubes.xml"


def default_store_path() -> str:
    """Where the store is when nobody says: ``QUBES_XML_PATH``, else
    ``/var/lib/qubes/qubes.xml`` for root, else a per-user data folder
    (``$XDG_DATA_HOME/qubes/qubes.xml``)."""
    path = os.environ.get("QUBES_XML_PATH")
    if path:
        return path
    if os.geteuid() == 0:
        return SYSTEM_PATH
    data_home = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return os.path.join(data_home, "qubes", "qubes.xml")


@dataclass(frozen=True)
class FileStamp:
    """Which version of a file was read; ``None`` fields: no file."""

    device: int | None
    inode: int | None
    size: int | None
    mtime_ns: int | None

    @classmethod
    def of(cls, result: os.stat_result | None) -> FileStamp:
        """The stamp of a ``stat`` result, or of a missing file."""
        if result is None:
            return cls(None, None, None, None)
        return cls(
            result.st_dev, result.st_ino, result.st_size, result.st_mtime_ns
        )


#: seconds a writer waits for another one to finish
LOCK_WAIT = 60.0


def _wait_for_lock(fd: int, path: str) -> None:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise exc.QubesStoreError(
                    f"another process has held the lock for {LOCK_WAIT:g} s",
                    path=path,
                ) from None
            time.sleep(0.02)


def _stat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


class StoreFile:
    """One qubes.xml file.

    :param path: the file; its folder must exist before a save
    """

    def __init__(self, path: str) -> None:
        # Through a symbolic link to the file itself: replacing the link
        # would leave the real store behind.
        self.path = os.path.realpath(path)
        self.lock_path = self.path + ".lock"
        self.stamp: FileStamp | None = None

    @contextlib.contextmanager
    def open(self) -> Iterator[BinaryIO]:
        """Open the file for reading and remember its stamp.

        Errors of a parser reading the file inside the block are turned
        into :class:`~qubes.exc.QubesXMLError` naming the line.

        :raises QubesStoreNotFoundError: there is no file
        :raises QubesXMLError: it is not well-formed XML
        :raises QubesStoreError: it cannot be read
        """
        try:
            file = open(self.path, "rb")  # noqa: SIM115 (closed below)
        except FileNotFoundError:
            raise exc.QubesStoreNotFoundError(
                "no such file (qubes-create makes a new store)",
                path=self.path,
            ) from None
        except OSError as err:
            raise exc.QubesStoreError(
                f"cannot read: {err.strerror}", path=self.path
            ) from err
        with file:
            self.stamp = FileStamp.of(os.fstat(file.fileno()))
            try:
                yield file
            except lxml.etree.XMLSyntaxError as err:
                first = (err.msg or "").strip().splitlines() or ["?"]
                raise exc.QubesXMLError(
                    f"malformed XML: {first[0].rstrip(',')}",
                    line=err.lineno or None,
                    path=self.path,
                ) from err
            except OSError as err:
                raise exc.QubesStoreError(
                    f"cannot read: {err.strerror}", path=self.path
                ) from err

    def mark_new(self) -> None:
        """Expect no file at the next save (a store being created)."""
        self.stamp = FileStamp.of(None)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the writers' lock for the duration of the block."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError as err:
            folder = os.path.dirname(self.lock_path) or "."
            raise exc.QubesStoreError(
                f"cannot open the lock file: there is no folder {folder}",
                path=self.lock_path,
            ) from err
        except OSError as err:
            raise exc.QubesStoreError(
                f"cannot open the lock file: {err.strerror}",
                path=self.lock_path,
            ) from err
        try:
            _wait_for_lock(fd, self.lock_path)
            yield
        finally:
            os.close(fd)

    def write(self, writer: Callable[[BinaryIO], None]) -> None:
        """Replace the file with what *writer* writes, atomically and
        under the lock.

        :param writer: called with the temporary file, open for writing
        :raises QubesConcurrentWriteError: the file is not the version
            that was read (or created) by this object
        :raises QubesStoreError: it cannot be written; the old file is
            left as it was
        """
        with self.lock():
            self.write_locked(writer)

    def write_locked(self, writer: Callable[[BinaryIO], None]) -> None:
        """:meth:`write`, for a caller that holds :meth:`lock` already."""
        current = _stat_or_none(self.path)
        if self.stamp is None or FileStamp.of(current) != self.stamp:
            raise exc.QubesConcurrentWriteError(
                "changed by another writer since it was loaded; "
                "load it again and redo the change",
                path=self.path,
            )
        mode = 0o644 if current is None else current.st_mode & 0o7777
        self._sweep_temporaries()
        self.stamp = FileStamp.of(self._replace(writer, mode))

    @property
    def _temp_prefix(self) -> str:
        return "." + os.path.basename(self.path) + "."

    def _sweep_temporaries(self) -> None:
        """Remove the temporary files a writer killed mid-save left.

        Only a writer that holds the lock makes them, so with the lock
        held every one of this file's is stale. Another file's in the
        same folder differ in their prefix and are left alone.
        """
        folder = os.path.dirname(self.path)
        pattern = re.compile(re.escape(self._temp_prefix) + r"\w{8}\.tmp")
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if pattern.fullmatch(name):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(folder, name))

    def _replace(
        self, writer: Callable[[BinaryIO], None], mode: int
    ) -> os.stat_result:
        folder = os.path.dirname(self.path)
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=self._temp_prefix, suffix=".tmp", dir=folder
            )
        except OSError as err:
            raise exc.QubesStoreError(
                f"cannot write in {folder}: {err.strerror}", path=self.path
            ) from err
        try:
            with os.fdopen(fd, "wb") as file:
                writer(file)
                file.flush()
                os.fchmod(file.fileno(), mode)
                os.fsync(file.fileno())
            os.replace(tmp, self.path)
        except BaseException as err:
            # Whatever failed (the disk, or building the document), the
            # old file stays and the half-written one goes.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(err, OSError):
                raise exc.QubesStoreError(
                    f"cannot write: {err.strerror}", path=self.path
                ) from err
            raise
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return os.stat(self.path)
