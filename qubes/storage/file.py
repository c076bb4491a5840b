"""The ``file`` pool driver: each volume is an image file under a folder.

A volume ``appvms/work/private`` of a pool with ``dir_path=/var/lib/qubes``
is the file ``/var/lib/qubes/appvms/work/private.img``. A volume with
``snap_on_start`` reads through to its ``source`` volume's image.
"""

from __future__ import annotations

import os

from qubes.storage import Pool, Volume

__all__ = ["FilePool", "FileVolume"]


class FileVolume(Volume):
    """A volume stored as one image file."""

    pool: FilePool

    def __init__(self, pool: Pool, config: dict[str, str]) -> None:
        super().__init__(pool, config)
        self._path = self.pool.image_path(self.vid)

    @property
    def path(self) -> str:
        """The image file of this volume."""
        return self._path

    @property
    def source_path(self) -> str | None:
        """The image this volume is a snapshot of, when it has a source."""
        if self.source is None:
            return None
        return self.pool.image_path(self.source)


class FilePool(Pool):
    """Image files under ``dir_path``."""

    driver = "file"
    volume_class = FileVolume

    @property
    def dir_path(self) -> str:
        """The folder that holds the images."""
        return self.config.get("dir_path", "/var/lib/qubes")

    def image_path(self, vid: str) -> str:
        """The image file of the volume with id *vid*."""
        return os.path.join(self.dir_path, vid + ".img")
