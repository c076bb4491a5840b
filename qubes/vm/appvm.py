"""AppVM: a domain based on a TemplateVM, keeping only its private data."""

from __future__ import annotations

from qubes.properties import VMProperty
from qubes.vm import volumes
from qubes.vm.mix.dvmtemplate import DVMTemplateMixin
from qubes.vm.mix.net import NetVMMixin
from qubes.vm.qubesvm import QubesVM
from qubes.vm.templatevm import TemplateVM

__all__ = ["AppVM"]


class AppVM(DVMTemplateMixin, NetVMMixin, QubesVM):
    """A domain whose root is a snapshot of its template's root, taken
    at each start, and whose private volume is its own."""

    template = VMProperty(
        vmclass=TemplateVM,
        default=lambda vm: vm.app.default_template,
        doc="TemplateVM this domain is based on.",
    )

    def default_volume_config(self) -> dict[str, dict[str, str]]:
        """Root from the template's, own private, a volatile, kernel."""
        return volumes.with_kernel(
            {
                "root": volumes.snapshot_volume(self, "root", self.template),
                "private": volumes.own_volume(
                    self, "private", volumes.PRIVATE_SIZE
                ),
                "volatile": volumes.volatile_volume(self),
            },
            self,
        )
