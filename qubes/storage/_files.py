"""File operations the pool drivers share, with errors in one form.

Every failure becomes a :class:`~qubes.exc.QubesStorageError` naming the
file and what was attempted.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence

from qubes import exc
from qubes.storage._copy import copy_image, open_new

__all__ = [
    "storage_errors",
    "mount_overlay",
    "unmount",
    "run",
    "sparse_file",
    "copy_file",
    "remove",
    "copy_tree",
    "revisions",
    "revision_path",
    "prune",
]


@contextlib.contextmanager
def storage_errors(what: str, path: str) -> Iterator[None]:
    """Turn an ``OSError`` inside the block into a storage error."""
    try:
        yield
    except OSError as err:
        raise exc.QubesStorageError(
            f"cannot {what} {path}: {err.strerror or err}"
        ) from err


def run(command: Sequence[str], what: str, path: str) -> str:
    """Run a command; its output, or a storage error with its stderr."""
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, check=False
        )
    except OSError as err:
        raise exc.QubesStorageError(
            f"cannot {what} {path}: {command[0]}: {err.strerror or err}"
        ) from err
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()
        raise exc.QubesStorageError(
            f"cannot {what} {path}: "
            + (message[-1] if message else f"exit status {done.returncode}")
        )
    return done.stdout


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def mount_overlay(lower: str, upper: str, work: str, target: str) -> None:
    """Mount an overlay on *target*: *lower* read-only below, *upper*
    above. The system call, not mount(8): twenty containers starting at
    once would otherwise spend more time starting mount(8) than
    mounting."""
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if (
        _c().mount(
            b"overlay", os.fsencode(target), b"overlay", 0, os.fsencode(options)
        )
        != 0
    ):
        err = ctypes.get_errno()
        raise exc.QubesStorageError(
            f"cannot mount an overlay on {target}: {os.strerror(err)}"
        )


def unmount(target: str) -> None:
    """Unmount *target* (the system call, as :func:`mount_overlay`)."""
    if _c().umount2(os.fsencode(target), 0) != 0:
        err = ctypes.get_errno()
        raise exc.QubesStorageError(
            f"cannot unmount {target}: {os.strerror(err)}"
        )


def sparse_file(path: str, size: int) -> None:
    """A new, empty (sparse) file of *size* bytes, replacing any."""
    with storage_errors("create", path):
        fd = open_new(path, 0o666)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)


def copy_file(source: str, target: str, missing_ok: bool = False) -> None:
    """Copy an image, sharing blocks where the filesystem can and
    keeping holes, replacing *target*.

    :param missing_ok: a missing *source* is nothing to copy
    """
    with storage_errors("copy to", target):
        try:
            copy_image(source, target)
        except FileNotFoundError:
            if missing_ok and not os.path.exists(source):
                return
            raise


def _copy_entry(source: str, target: str) -> None:
    # FIFOs and device nodes are made anew (copying one would read from
    # it); a socket belongs to a running program and is left out.
    info = os.lstat(source)
    if stat.S_ISSOCK(info.st_mode):
        return
    if (
        stat.S_ISFIFO(info.st_mode)
        or stat.S_ISCHR(info.st_mode)
        or (stat.S_ISBLK(info.st_mode))
    ):
        os.mknod(target, info.st_mode, info.st_rdev)
        shutil.copystat(source, target, follow_symlinks=False)
        return
    shutil.copy2(source, target, follow_symlinks=False)


def copy_tree(source: str, target: str) -> None:
    """Copy a folder tree, with owners, modes, times and links as they
    are (a private volume is small; no copy program is started).
    Sockets are left out."""
    with storage_errors("copy", source):
        shutil.copytree(
            source, target, symlinks=True, copy_function=_copy_entry
        )
        for folder, dirs, names in os.walk(source):
            rel = os.path.relpath(folder, source)
            for name in [".", *dirs, *names]:
                src = os.path.normpath(os.path.join(folder, name))
                info = os.lstat(src)
                if stat.S_ISSOCK(info.st_mode):
                    continue
                dst = os.path.normpath(os.path.join(target, rel, name))
                os.lchown(dst, info.st_uid, info.st_gid)


def remove(path: str) -> None:
    """Remove a file or a folder tree; nothing if it is not there."""
    with storage_errors("remove", path):
        # unlink() first: most volumes are files, and a folder (or
        # nothing) is told by its error.
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except IsADirectoryError:
            shutil.rmtree(path)


def revision_path(path: str) -> str:
    """A new revision's name: *path* with the time it was taken."""
    return f"{path}.rev{time.time_ns()}"


def revisions(path: str) -> list[str]:
    """The revisions of *path*, oldest first."""
    folder, base = os.path.split(path)
    prefix = base + ".rev"
    try:
        names = os.listdir(folder or ".")
    except FileNotFoundError:
        return []
    found = [n for n in names if n.startswith(prefix)]
    found.sort(key=lambda n: int(n[len(prefix) :] or 0))
    return [os.path.join(folder, n) for n in found]


def prune(path: str, keep: int) -> None:
    """Remove the oldest revisions of *path* beyond *keep*."""
    old = revisions(path)
    for stale in old[: max(0, len(old) - keep)]:
        remove(stale)
