"""What a starting domain finds in its QubesDB.

These are the entries a Qubes guest reads at boot: who it is, how it
persists, its network, and the services its features enable
(``service.NAME`` features become ``/qubes-service/NAME``).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from qubes.features import SERVICE

__all__ = ["qubesdb_entries", "random_seed"]

_PERSISTENCE = {
    "AppVM": "rw-only",
    "DispVM": "none",
    "TemplateVM": "full",
    "StandaloneVM": "full",
}


def _network(vm: Any) -> dict[str, str]:
    entries: dict[str, str] = {}
    if getattr(vm, "netvm", None) is not None:
        entries["/qubes-ip"] = vm.visible_ip or ""
        entries["/qubes-netmask"] = vm.netmask or ""
        entries["/qubes-gateway"] = vm.visible_gateway or ""
        entries["/qubes-primary-dns"] = vm.dns[0]
        entries["/qubes-secondary-dns"] = vm.dns[1]
        entries["/qubes-mac"] = vm.mac
    if getattr(vm, "provides_network", False):
        entries["/qubes-netvm-gateway"] = vm.gateway or ""
        entries["/qubes-netvm-netmask"] = vm.netmask or ""
        entries["/qubes-netvm-primary-dns"] = vm.dns[0]
        entries["/qubes-netvm-secondary-dns"] = vm.dns[1]
    return entries


def random_seed() -> str:
    """``/qubes-random-seed``: entropy for the guest, new at each start."""
    return base64.b64encode(os.urandom(64)).decode()


def qubesdb_entries(vm: Any) -> dict[str, str]:
    """Path to value for *vm*'s QubesDB at start, but the random seed."""
    template = getattr(vm, "template", None)
    entries = {
        "/name": vm.name,
        "/type": vm.klass,
        "/qubes-vm-type": vm.klass,
        "/qubes-vm-updateable": str(vm.updateable),
        "/qubes-vm-persistence": _PERSISTENCE.get(vm.klass, "full"),
        "/qubes-debug-mode": "1" if vm.debug else "0",
        "/default-user": vm.default_user,
        "/qubes-base-template": template.name if template else "",
    }
    entries.update(_network(vm))
    for feature, value in vm.features.items():
        if feature.startswith(SERVICE):
            enabled = "1" if value not in ("", "0") else "0"
            entries["/qubes-service/" + feature[len(SERVICE) :]] = enabled
    return entries
