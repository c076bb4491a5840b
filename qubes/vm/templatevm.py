"""TemplateVM: the domain whose root volume its AppVMs start from."""

from __future__ import annotations

from typing import Any

from qubes.properties import VMProperty
from qubes.vm import volumes
from qubes.vm.mix.net import NetVMMixin, setter_netvm
from qubes.vm.qubesvm import QubesVM

__all__ = ["TemplateVM"]


class TemplateVM(NetVMMixin, QubesVM):
    """A template: software is installed here, and its AppVMs see the
    root volume as it was at their start."""

    # Templates reach updates through a proxy, not a network of their own.
    netvm = VMProperty(
        allow_none=True,
        setter=setter_netvm,
        default=None,
        doc="Domain that gives this one its network; none by default.",
    )

    dir_path_prefix = "vm-templates"

    @property
    def appvms(self) -> list[Any]:
        """Domains based on this template."""
        return [
            vm
            for vm in self.app.domains
            if getattr(vm, "template", None) is self
        ]

    def default_volume_config(self) -> dict[str, dict[str, str]]:
        """Root and private kept at stop, a volatile, the kernel."""
        return volumes.with_kernel(
            {
                "root": volumes.own_volume(self, "root", volumes.ROOT_SIZE),
                "private": volumes.own_volume(
                    self, "private", volumes.PRIVATE_SIZE
                ),
                "volatile": volumes.volatile_volume(self),
            },
            self,
        )
