"""The volume configuration a new domain gets, by role.

Sizes are the Qubes defaults: a 10 GiB root and volatile volume and a
2 GiB private volume. Volume ids are ``vm-templates/NAME/VOLUME`` for a
TemplateVM and ``appvms/NAME/VOLUME`` for the others, as on Qubes.
"""

from __future__ import annotations

from typing import Any

from qubes import exc

__all__ = ["own_volume", "snapshot_volume", "volatile_volume", "kernel_volume"]

GIB = 1024**3
ROOT_SIZE = 10 * GIB
PRIVATE_SIZE = 2 * GIB
VOLATILE_SIZE = 10 * GIB


def _vid(vm: Any, volume: str) -> str:
    return f"{vm.dir_path_prefix}/{vm.name}/{volume}"


def own_volume(vm: Any, volume: str, size: int) -> dict[str, str]:
    """A volume the domain owns and keeps at stop (root of a template,
    any private volume)."""
    return {
        "name": volume,
        "pool": vm.app.default_pool_for(volume),
        "vid": _vid(vm, volume),
        "revisions_to_keep": "1",
        "rw": "True",
        "save_on_stop": "True",
        "snap_on_start": "False",
        "size": str(size),
    }


def snapshot_volume(
    vm: Any, volume: str, origin: Any, origin_volume: str | None = None
) -> dict[str, str]:
    """A volume that is a fresh copy of *origin*'s volume at each start
    and whose changes are dropped at stop.

    :param origin: the domain whose volume is copied (the template)
    :param origin_volume: its volume's name; by default *volume*
    :raises QubesStorageError: *origin* has no such volume
    """
    source = origin.volume_config.get(origin_volume or volume)
    if source is None:
        raise exc.QubesStorageError(
            f"{origin.name!r} has no {origin_volume or volume!r} volume "
            "to start from",
            domain=vm.name,
        )
    return {
        "name": volume,
        "pool": source.get("pool", vm.app.default_pool_for(volume)),
        "vid": _vid(vm, volume),
        "revisions_to_keep": "0",
        "rw": "True",
        "save_on_stop": "False",
        "snap_on_start": "True",
        "size": source.get("size", str(ROOT_SIZE)),
        "source": source.get("source") or source["vid"],
    }


def volatile_volume(vm: Any) -> dict[str, str]:
    """Scratch space (swap, /tmp), emptied at every start."""
    return {
        "name": "volatile",
        "pool": vm.app.default_pool_for("volatile"),
        "vid": _vid(vm, "volatile"),
        "revisions_to_keep": "0",
        "rw": "True",
        "save_on_stop": "False",
        "snap_on_start": "False",
        "size": str(VOLATILE_SIZE),
    }


def kernel_volume(vm: Any) -> dict[str, str] | None:
    """The kernel from the kernel pool; ``None`` without a kernel."""
    if vm.kernel is None:
        return None
    return {
        "name": "kernel",
        "pool": vm.app.default_pool_for("kernel"),
        "vid": vm.kernel,
        "revisions_to_keep": "0",
        "rw": "False",
        "save_on_stop": "False",
        "snap_on_start": "False",
    }


def with_kernel(
    configs: dict[str, dict[str, str]], vm: Any
) -> dict[str, dict[str, str]]:
    """*configs* plus the kernel volume, when the domain has a kernel."""
    kernel = kernel_volume(vm)
    if kernel is not None:
        configs["kernel"] = kernel
    return configs
