"""The ``linux-kernel`` pool driver: kernels under ``vm-kernels/VERSION``.

A kernel volume's id is the kernel version; its folder holds ``vmlinuz``
and ``initramfs`` (and, on Qubes, ``modules.img``). The volume is always
read-only for the domain.
"""

from __future__ import annotations

import os

from qubes import exc
from qubes.storage import Pool, Volume, join

__all__ = ["LinuxKernelPool", "KernelVolume"]


class KernelVolume(Volume):
    """A kernel, its initramfs and modules, as one read-only volume.

    :ivar kernel_dir: the folder of this kernel version
    :ivar vmlinuz: the kernel image
    :ivar initramfs: the initial ramdisk
    :ivar modules: the modules image, a disk the guest mounts
    """

    pool: LinuxKernelPool

    def __init__(self, pool: Pool, config: dict[str, str]) -> None:
        super().__init__(pool, config)
        self.kernel_dir = folder = join(self.pool.dir_path, self.vid)
        self.vmlinuz = join(folder, "vmlinuz")
        self.initramfs = join(folder, "initramfs")
        self.modules = join(folder, "modules.img")

    @property
    def path(self) -> str:
        """As a disk, the kernel volume is its modules image."""
        return self.modules

    @property
    def attached(self) -> bool:
        """Whether the domain gets the modules image as a disk: unless
        the kernel is installed here without one (its modules built in,
        or in its initramfs). A kernel that is not installed here (the
        simulated host's) is described as Qubes ships it, with one."""
        # One access() where the modules are there: it runs for each
        # domain's XML, and a path lookup is the dearest part of that.
        if os.access(self.modules, os.F_OK):
            return True
        return not os.path.isdir(self.kernel_dir)

    def exists(self) -> bool:
        """Whether the kernel is installed."""
        return os.path.isfile(self.vmlinuz)

    def verify(self) -> None:
        """Check that the kernel and its initramfs are installed.

        :raises QubesStorageError: one of them is missing
        """
        for path in (self.vmlinuz, self.initramfs):
            if not os.access(path, os.F_OK):
                raise exc.QubesStorageError(
                    f"kernel {self.vid!r} is not installed in pool "
                    f"{self.pool.name!r}: no {path}"
                )


class LinuxKernelPool(Pool):
    """Kernels under ``dir_path``, one folder per version."""

    driver = "linux-kernel"
    volume_class = KernelVolume

    @property
    def dir_path(self) -> str:
        """The folder that holds one folder per kernel version."""
        return self.config.get("dir_path", "/var/lib/qubes/vm-kernels")
