"""Finding plugins: domain classes, backends and pool drivers.

The package's own plugins are listed here and in ``pyproject.toml``
alike; the built-in table is consulted first, so that loading a store
does not scan every installed distribution. A name the table does not
know is looked up in the entry-point group, which is where a separate
package adds a fourth backend or another pool driver.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

__all__ = ["GROUP_VM", "GROUP_BACKENDS", "GROUP_STORAGE", "load", "names"]

GROUP_VM = "qubes.vm"
GROUP_BACKENDS = "qubes.backends"
GROUP_STORAGE = "qubes.storage"

_BUILTIN: dict[str, dict[str, str]] = {
    GROUP_VM: {
        "AdminVM": "qubes.vm.adminvm:AdminVM",
        "AppVM": "qubes.vm.appvm:AppVM",
        "TemplateVM": "qubes.vm.templatevm:TemplateVM",
        "StandaloneVM": "qubes.vm.standalonevm:StandaloneVM",
        "DispVM": "qubes.vm.dispvm:DispVM",
    },
    GROUP_BACKENDS: {
        "xen": "qubes.backends.xen:XenBackend",
        "kvm": "qubes.backends.kvm:KVMBackend",
        "lxc": "qubes.backends.lxc:make_backend",
    },
    GROUP_STORAGE: {
        "file": "qubes.storage.file:FilePool",
        "qcow2": "qubes.storage.qcow2:Qcow2Pool",
        "dir": "qubes.storage.dir:DirPool",
        "linux-kernel": "qubes.storage.kernels:LinuxKernelPool",
    },
}

_cache: dict[tuple[str, str], Any] = {}


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def load(group: str, name: str) -> Any:
    """The object registered as *name* in *group*.

    :raises LookupError: nothing is registered under that name
    """
    key = (group, name)
    if key in _cache:
        return _cache[key]
    target = _BUILTIN.get(group, {}).get(name)
    if target is not None:
        found = _import(target)
    else:
        matches = importlib.metadata.entry_points(group=group, name=name)
        if not matches:
            raise LookupError(f"no {group} plugin named {name!r}")
        found = next(iter(matches)).load()
    _cache[key] = found
    return found


def names(group: str) -> list[str]:
    """Every name registered in *group*, built-in ones first."""
    found = list(_BUILTIN.get(group, {}))
    for entry in importlib.metadata.entry_points(group=group):
        if entry.name not in found:
            found.append(entry.name)
    return found
