"""Who owns a container's folders on the host, under a user namespace.

With an id map, uid 0 in the container is host uid ``idmap_target(qid)``
and so on up the range. A container can write only to what belongs to
its range, so before it starts:

- a folder volume it keeps (its private volume, a TemplateVM's root) is
  shifted into its range, once: every file owned by uid N (or by uid N
  of another domain's range) comes to belong to uid N of this one;
- the overlay of an AppVM's root has its top folder shifted only, so
  the container can add files at ``/``; the files below belong to the
  template's range and stay read-only to it (shifting them would copy
  the whole template into the overlay).

Image volumes (loop-mounted files) keep their own ownership: a user-
namespaced container writes to one only if its files belong to its
range.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from qubes.backends.lxc._xml import (
    IDMAP_BASE,
    IDMAP_COUNT,
    idmap_target,
    uses_userns,
)
from qubes.backends.spec import DiskSpec, DomainSpec
from qubes.storage import _files as files

__all__ = ["prepare", "prepare_domain", "shifted"]

_MOUNTED = ("root", "private")


def shifted(owner: int, target: int) -> int:
    """*owner* moved into the range that starts at *target*."""
    if owner >= IDMAP_BASE:
        owner = (owner - IDMAP_BASE) % IDMAP_COUNT
    return target + owner if owner < IDMAP_COUNT else target


def _shift(path: str, target: int) -> None:
    stat = os.lstat(path)
    os.lchown(path, shifted(stat.st_uid, target), shifted(stat.st_gid, target))


def _shift_tree(top: str, target: int) -> None:
    for folder, dirs, names in os.walk(top):
        for name in dirs + names:
            _shift(os.path.join(folder, name), target)
    _shift(top, target)


def _folders(spec: DomainSpec) -> list[DiskSpec]:
    """The folders to give the container of *spec*, if any."""
    if not uses_userns(spec):
        return []
    return [
        disk
        for disk in spec.disks
        if disk.format == "dir" and disk.rw and disk.name in _MOUNTED
    ]


async def prepare_domain(spec: DomainSpec, vm: Any) -> None:
    """:func:`prepare` for a domain, off the event loop; without a
    thread where there is nothing to do (image volumes, no user
    namespace)."""
    if not _folders(spec):
        return
    snapshots = {name for name, v in vm.volumes.items() if v.snap_on_start}
    await asyncio.to_thread(prepare, spec, snapshots)


def prepare(spec: DomainSpec, snapshots: set[str]) -> None:
    """Give the container of *spec* its writable folders.

    :param snapshots: names of the volumes that are overlays
    """
    folders = _folders(spec)
    if not folders:
        return
    target = idmap_target(spec.qid)
    for disk in folders:
        with files.storage_errors("give the container", disk.path):
            if disk.name in snapshots:
                _shift(disk.path, target)
            elif os.lstat(disk.path).st_uid != target:
                _shift_tree(disk.path, target)
