"""What the store needs to know of the host it runs on."""

from __future__ import annotations

import os

__all__ = ["Host"]


class Host:
    """The machine: memory and CPUs, read once on first use."""

    def __init__(self) -> None:
        self._memory_total: int | None = None

    @property
    def memory_total(self) -> int:
        """Total memory in KiB (0 when /proc/meminfo is unreadable)."""
        if self._memory_total is None:
            self._memory_total = _read_memtotal()
        return self._memory_total

    @property
    def no_cpus(self) -> int:
        """Number of CPUs."""
        return os.cpu_count() or 1


def _read_memtotal() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0
