"""StandaloneVM: a domain with its own root volume and no template."""

from __future__ import annotations

from qubes.vm import volumes
from qubes.vm.mix.dvmtemplate import DVMTemplateMixin
from qubes.vm.mix.net import NetVMMixin
from qubes.vm.qubesvm import QubesVM

__all__ = ["StandaloneVM"]


class StandaloneVM(DVMTemplateMixin, NetVMMixin, QubesVM):
    """A domain whose root volume is its own and kept at stop."""

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
