"""The ``qcow2`` pool driver: volumes are qcow2 images, snapshots are
copy-on-write overlays (for QEMU).

A snapshot (an AppVM's root) is a new overlay whose backing file is its
source's image, made at start with ``qemu-img`` and removed at stop: the
AppVM's changes to its root are discarded. A revision is an internal
qcow2 snapshot taken at start (``qubes-rev-TIME``).

A source that is still the backing file of a running domain's overlay
cannot be written: QEMU locks it. A TemplateVM therefore starts only
while none of its AppVMs runs on this pool; otherwise its start fails
with QEMU's locking error.
"""

from __future__ import annotations

import os
import time

from qubes.storage import _files as files
from qubes.storage._local import LocalPool, LocalVolume

__all__ = ["Qcow2Pool", "Qcow2Volume"]

_REVISION = "qubes-rev-"


class Qcow2Volume(LocalVolume):
    """A volume stored as a qcow2 image."""

    pool: Qcow2Pool
    format = "qcow2"

    def _qemu_img(self, *args: str) -> str:
        return files.run(["qemu-img", *args], "make", self._path)

    def make_empty(self) -> None:
        """A new, empty qcow2 image of the volume's size."""
        with files.storage_errors("create", self._path):
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
        files.remove(self._path)
        self._qemu_img(
            "create", "-q", "-f", "qcow2", self._path, str(self.size)
        )

    def make_snapshot(self) -> None:
        """A new overlay on the source image."""
        source = self.source_path
        assert source is not None
        with files.storage_errors("create", self._path):
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
        files.remove(self._path)
        self._qemu_img(
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            source,
            "-F",
            "qcow2",
            self._path,
        )

    def discard(self) -> None:
        """Remove the image."""
        files.remove(self._path)

    def _revisions(self) -> list[str]:
        listing = self._qemu_img("snapshot", "-l", self._path)
        names = [
            line.split()[1]
            for line in listing.splitlines()
            if len(line.split()) > 1 and line.split()[1].startswith(_REVISION)
        ]
        return sorted(names, key=lambda n: int(n[len(_REVISION) :]))

    def keep_revision(self) -> None:
        """Take an internal snapshot; delete the oldest beyond the number
        to keep."""
        if not self.exists():
            return
        name = f"{_REVISION}{time.time_ns()}"
        self._qemu_img("snapshot", "-c", name, self._path)
        self._drop_revisions(self.revisions_to_keep)

    def _drop_revisions(self, keep: int) -> None:
        old = self._revisions()
        for stale in old[: max(0, len(old) - keep)]:
            self._qemu_img("snapshot", "-d", stale, self._path)

    def discard_revisions(self) -> None:
        """Nothing: the revisions live in the image, removed with it."""

    def import_data(self, source: str) -> None:
        """Replace the image with *source*, converted to qcow2."""
        with files.storage_errors("create", self._path):
            os.makedirs(os.path.dirname(self._path), exist_ok=True)
        files.remove(self._path)
        self._qemu_img("convert", "-O", "qcow2", source, self._path)


class Qcow2Pool(LocalPool):
    """qcow2 images under ``dir_path``."""

    driver = "qcow2"
    volume_class = Qcow2Volume
    suffix = ".qcow2"
