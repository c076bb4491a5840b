"""The ``dir`` pool driver: volumes are folders (for containers).

A volume ``appvms/work/private`` of a pool with ``dir_path=/srv/qubes``
is the folder ``/srv/qubes/appvms/work/private``. A snapshot (an AppVM's
root) is an overlay mounted at start on that folder: the source folder
(its template's root) below, read-only, and an upper folder of the
domain's own above, removed at stop, so the AppVM's changes to its root
are discarded. A revision is a copy taken at start, kept as
``NAME.revTIME``.

Mounting needs root, and the engine must see the mounts: a container
engine that runs in a mount namespace of its own sees a mount made
after it started only below a shared mount point (the project's test
set-up keeps its pools there).
"""

from __future__ import annotations

import os

from qubes.storage import _files as files
from qubes.storage._local import LocalPool, LocalVolume

__all__ = ["DirPool", "DirVolume"]


def _is_mount(path: str) -> bool:
    return os.path.ismount(path)


class DirVolume(LocalVolume):
    """A volume stored as a folder."""

    pool: DirPool
    format = "dir"

    def is_there(self, path: str) -> bool:
        """Whether *path* holds a volume of this kind: a folder."""
        return os.path.isdir(path)

    @property
    def _upper(self) -> str:
        return self._path + ".upper"

    def make_empty(self) -> None:
        """A new, empty folder."""
        self.discard()
        with files.storage_errors("create", self._path):
            os.makedirs(self._path)

    def make_snapshot(self) -> None:
        """Mount an overlay: the source below, a fresh upper folder."""
        source = self.source_path
        assert source is not None
        self.discard()
        upper, work = self._upper + "/data", self._upper + "/work"
        with files.storage_errors("create", self._path):
            for folder in (upper, work, self._path):
                os.makedirs(folder)
        files.mount_overlay(source, upper, work, self._path)

    def discard(self) -> None:
        """Unmount the overlay if there is one; remove the folders."""
        if _is_mount(self._path):
            files.unmount(self._path)
        files.remove(self._path)
        files.remove(self._upper)

    def keep_revision(self) -> None:
        """Copy the folder as a revision; drop the oldest beyond the
        number to keep."""
        if os.path.isdir(self._path):
            files.copy_tree(self._path, files.revision_path(self._path))
        files.prune(self._path, self.revisions_to_keep)

    def discard_revisions(self) -> None:
        """Remove every revision."""
        files.prune(self._path, 0)

    def import_data(self, source: str) -> None:
        """Replace the folder's content with a copy of folder *source*."""
        self.make_empty()
        files.run(
            ["cp", "-a", "--reflink=auto", source + "/.", self._path],
            "copy into",
            self._path,
        )


class DirPool(LocalPool):
    """Folders under ``dir_path``."""

    driver = "dir"
    volume_class = DirVolume
