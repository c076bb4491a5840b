"""The ``file`` pool driver: each volume is a raw sparse image file.

A volume ``appvms/work/private`` of a pool with ``dir_path=/var/lib/qubes``
is the file ``/var/lib/qubes/appvms/work/private.img``. A snapshot (an
AppVM's root) is a copy of its source's image, made at start — a
reflink where the filesystem shares blocks, otherwise a sparse copy —
and removed at stop. A revision is a copy taken at start, kept as
``NAME.img.revTIME``.
"""

from __future__ import annotations

from qubes.storage import _files as files
from qubes.storage._local import LocalPool, LocalVolume

__all__ = ["FilePool", "FileVolume"]


class FileVolume(LocalVolume):
    """A volume stored as one raw image file."""

    pool: FilePool

    def make_empty(self) -> None:
        """A new sparse image of the volume's size."""
        files.sparse_file(self._path, self.size)

    def make_snapshot(self) -> None:
        """A copy of the source image."""
        assert self.source_path is not None
        files.copy_file(self.source_path, self._path)

    def discard(self) -> None:
        """Remove the image."""
        files.remove(self._path)

    def keep_revision(self) -> None:
        """Copy the image as a revision; drop the oldest beyond the
        number to keep."""
        revision = files.revision_path(self._path)
        files.copy_file(self._path, revision, missing_ok=True)
        files.prune(self._path, self.revisions_to_keep)

    def discard_revisions(self) -> None:
        """Remove every revision."""
        files.prune(self._path, 0)

    def import_data(self, source: str) -> None:
        """Replace the image with a copy of *source*."""
        files.copy_file(source, self._path)


class FilePool(LocalPool):
    """Image files under ``dir_path``."""

    driver = "file"
    volume_class = FileVolume
    suffix = ".img"
