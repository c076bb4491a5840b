"""QubesVM: the properties and actions every real domain has.

This module is written for security reviewers. It uses no metaclass and
no dynamic attribute: each property below is declared once, with its
default spelled out in a named function next to it. Where a domain has
a template (AppVM, DispVM), many defaults follow the rule "the
template's value first": the template's effective value is taken, and
only a domain without a template falls back to the global default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from qubes import exc
from qubes.properties import Property, VMProperty
from qubes.vm import BaseVM

__all__ = ["QubesVM", "VIRT_MODES", "template_first"]

#: Xen's virtualisation modes; other backends map them onto their own.
VIRT_MODES = ("pv", "pvh", "hvm")

#: Kernel options used when no template gives any: PCI passthrough needs
#: a larger software IOMMU bounce buffer than the default guest.
DEFAULT_KERNELOPTS = "swiotlb=2048"
DEFAULT_KERNELOPTS_PCI = "iommu=soft swiotlb=8192"

_KERNEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def template_first(
    name: str, fallback: Callable[[Any], Any]
) -> Callable[[Any], Any]:
    """A default: the template's value of *name*, else ``fallback(vm)``."""

    def default(vm: Any) -> Any:
        template = getattr(vm, "template", None)
        if template is not None:
            return getattr(template, name)
        return fallback(vm)

    default.__name__ = f"default_{name}"
    return default


def _has_pci(vm: Any) -> bool:
    return bool(len(vm.devices["pci"]))


def _setter_positive(vm: Any, prop: Property, value: int) -> int:
    if value <= 0:
        raise exc.QubesPropertyValueError(
            f"must be positive, not {value}", value=value
        )
    return value


def _setter_not_negative(vm: Any, prop: Property, value: int) -> int:
    if value < 0:
        raise exc.QubesPropertyValueError(
            f"must not be negative, not {value}", value=value
        )
    return value


def _setter_virt_mode(vm: Any, prop: Property, value: str) -> str:
    value = value.lower()
    if value not in VIRT_MODES:
        raise exc.QubesPropertyValueError(
            f"{value!r} is not one of {', '.join(VIRT_MODES)}", value=value
        )
    return value


def _setter_kernel(vm: Any, prop: Property, value: Any) -> str | None:
    # The kernel is a folder name under the kernel pool: no path parts.
    if value is None or value == "":
        return None
    value = str(value)
    if not _KERNEL.match(value):
        raise exc.QubesPropertyValueError(
            f"invalid kernel version {value!r}", value=value
        )
    return str(value)


def _setter_optional_int(vm: Any, prop: Property, value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _default_maxmem(vm: Any) -> int:
    # Memory balancing cannot move memory of a domain with PCI devices:
    # their DMA needs fixed memory. 0 means "fixed at `memory`".
    if _has_pci(vm):
        return 0
    template = getattr(vm, "template", None)
    if template is not None:
        return int(template.maxmem)
    half_host = vm.app.host.memory_total // 1024 // 2
    return int(min(vm.app.default_maxmem, half_host or vm.app.default_maxmem))


def _default_virt_mode(vm: Any) -> str:
    # PCI passthrough works only for HVM domains.
    if _has_pci(vm):
        return "hvm"
    template = getattr(vm, "template", None)
    if template is not None:
        return str(template.virt_mode)
    return "pvh"


def _default_kernelopts(vm: Any) -> str:
    if _has_pci(vm):
        return DEFAULT_KERNELOPTS_PCI
    template = getattr(vm, "template", None)
    if template is not None:
        return str(template.kernelopts)
    return DEFAULT_KERNELOPTS


class QubesVM(BaseVM):
    """A domain that the backend runs: everything but dom0.

    Lifecycle actions (start, shutdown, kill, pause) are added by the
    backend layer; this class declares what a domain is.
    """

    memory = Property(
        type=int,
        setter=_setter_positive,
        default=template_first("memory", lambda vm: vm.app.default_memory),
        doc="Memory at start, MiB.",
    )
    maxmem = Property(
        type=int,
        setter=_setter_not_negative,
        default=_default_maxmem,
        doc="Memory the domain may balloon up to, MiB; 0 for fixed.",
    )
    vcpus = Property(
        type=int,
        setter=_setter_positive,
        default=template_first("vcpus", lambda vm: vm.app.default_vcpus),
        doc="Number of virtual CPUs.",
    )
    virt_mode = Property(
        type=str,
        setter=_setter_virt_mode,
        default=_default_virt_mode,
        doc="Virtualisation mode: pv, pvh or hvm.",
    )
    kernel = Property(
        setter=_setter_kernel,
        default=template_first("kernel", lambda vm: vm.app.default_kernel),
        doc="Kernel version from the kernel pool; empty: the domain's own.",
    )
    kernelopts = Property(
        type=str,
        default=_default_kernelopts,
        doc="Kernel command line additions.",
    )
    debug = Property(
        type=bool, default=False, doc="Debug mode: console and verbose boot."
    )
    installed_by_rpm = Property(
        type=bool, default=False, doc="Installed by a package, not by hand."
    )
    default_user = Property(
        type=str,
        default=template_first("default_user", lambda vm: "user"),
        doc="User that qrexec commands run as.",
    )
    qrexec_timeout = Property(
        type=int,
        setter=_setter_positive,
        default=template_first(
            "qrexec_timeout", lambda vm: vm.app.default_qrexec_timeout
        ),
        doc="Seconds to wait for the guest agent at start.",
    )
    shutdown_timeout = Property(
        type=int,
        setter=_setter_positive,
        default=template_first(
            "shutdown_timeout", lambda vm: vm.app.default_shutdown_timeout
        ),
        doc="Seconds a clean shutdown may take.",
    )
    autostart = Property(type=bool, default=False, doc="Start with the host.")
    include_in_backups = Property(
        type=bool, default=True, doc="Included in backups by default."
    )
    backup_timestamp = Property(
        setter=_setter_optional_int,
        default=None,
        doc="Time of the last backup, seconds since the epoch.",
    )
    keyboard_layout = Property(
        type=str,
        default=lambda vm: vm.app.default_keyboard_layout,
        doc="Keyboard layout passed to the guest.",
    )
    default_dispvm = VMProperty(
        allow_none=True,
        default=lambda vm: vm.app.default_dispvm,
        doc="Disposable template for DispVMs started from this domain.",
    )
    management_dispvm = VMProperty(
        allow_none=True,
        default=lambda vm: vm.app.management_dispvm,
        doc="Disposable template used to manage this domain.",
    )
    guivm = VMProperty(
        allow_none=True,
        default=lambda vm: vm.app.default_guivm,
        doc="Domain that shows this domain's windows.",
    )
    audiovm = VMProperty(
        allow_none=True,
        default=lambda vm: vm.app.default_audiovm,
        doc="Domain that plays this domain's sound.",
    )

    def get_power_state(self) -> str:
        """Halted, Transient, Running, Paused, Halting, Dying, Crashed or
        Suspended. A store opened without a backend runs nothing: every
        domain is Halted."""
        backend = self.app.backend
        if backend is None:
            return "Halted"
        return str(backend.get_power_state(self))

    def is_running(self) -> bool:
        """Whether the domain is started (running, paused, halting...)."""
        return self.get_power_state() != "Halted"

    def is_halted(self) -> bool:
        """Whether the domain is halted."""
        return self.get_power_state() == "Halted"

    @property
    def updateable(self) -> bool:
        """Whether the root volume's changes are kept at stop."""
        root = self.volume_config.get("root", {})
        return root.get("save_on_stop") == "True"

    @property
    def icon(self) -> str:
        """The icon name of this domain."""
        return str(self.label.icon)

    @property
    def dir_path(self) -> str:
        """The domain's folder under the store's base folder."""
        return os.path.join(self.app.base_dir, self.dir_path_prefix, self.name)

    #: folder under the base folder that holds domains of this class
    dir_path_prefix = "appvms"
