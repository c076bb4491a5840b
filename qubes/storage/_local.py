"""Pools that keep each volume as one file or folder under ``dir_path``.

The ``file``, ``qcow2`` and ``dir`` drivers share how a volume is found:
the volume ``appvms/work/private`` of a pool with
``dir_path=/var/lib/qubes`` is ``/var/lib/qubes/appvms/work/private``
followed by the driver's suffix (``.img``, ``.qcow2``, or none for a
folder). They differ in how a volume is made, copied and kept.
"""

from __future__ import annotations

import os

from qubes.storage import Pool, Volume, join

__all__ = ["LocalPool", "LocalVolume"]


class LocalVolume(Volume):
    """A volume stored as one file or folder of a :class:`LocalPool`."""

    pool: LocalPool

    def __init__(self, pool: Pool, config: dict[str, str]) -> None:
        super().__init__(pool, config)
        self._path = self.pool.location(self.vid)

    @property
    def path(self) -> str:
        """The file or folder of this volume."""
        return self._path

    def is_there(self, path: str) -> bool:
        """Whether *path* holds a volume of this kind: here, a file.
        (``access()``, not ``stat()``: every start asks, and a stat that
        fails costs an exception. A folder where an image should be
        passes, and the engine reports it when it opens the disk.)"""
        return os.access(path, os.F_OK)

    @property
    def source_path(self) -> str | None:
        """Where the volume this one is a snapshot of is, if it has one."""
        if self.source is None:
            return None
        return self.pool.location(self.source)

    def exists(self) -> bool:
        """Whether the volume is there."""
        return self.is_there(self._path)

    def source_exists(self) -> bool:
        """Whether the volume this one is a snapshot of is there."""
        source = self.source_path
        return source is not None and self.is_there(source)


class LocalPool(Pool):
    """Volumes under ``dir_path``, each named by its vid and a suffix."""

    #: What follows the vid in the name of a volume's file.
    suffix = ""

    @property
    def dir_path(self) -> str:
        """The folder that holds the volumes."""
        return self.config.get("dir_path", "/var/lib/qubes")

    def location(self, vid: str) -> str:
        """The file or folder of the volume with id *vid*."""
        return join(self.dir_path, vid + self.suffix)
