"""DispVM: a disposable domain, started from an AppVM and thrown away.

A DispVM is based on an AppVM whose ``template_for_dispvms`` is true (a
"disposable template"). Its root and private volumes are snapshots of
that AppVM's, taken at start and dropped at stop. It is named
``dispN`` after its ``dispid``, and its address comes from the dispid
(10.138.x.y), not from its qid.
"""

from __future__ import annotations

from typing import Any

from qubes import exc
from qubes.events import handler
from qubes.properties import Property, VMProperty
from qubes.vm import volumes
from qubes.vm.appvm import AppVM
from qubes.vm.mix.net import NetVMMixin
from qubes.vm.qubesvm import QubesVM

__all__ = ["DispVM", "MAX_DISPID"]

#: dispids map onto 10.138.x.y like qids onto 10.137.x.y
MAX_DISPID = 65535


def _setter_template(vm: Any, prop: Property, value: Any) -> Any:
    if not value.template_for_dispvms:
        raise exc.QubesPropertyValueError(
            f"{value.name!r} is not a disposable template "
            "(template_for_dispvms is false)",
            value=value,
        )
    return value


def _setter_dispid(vm: Any, prop: Property, value: int) -> int:
    if not 1 <= value <= MAX_DISPID:
        raise exc.QubesPropertyValueError(
            f"dispid {value} is out of range 1..{MAX_DISPID}", value=value
        )
    return value


class DispVM(NetVMMixin, QubesVM):
    """A disposable domain."""

    template = VMProperty(
        vmclass=AppVM,
        setter=_setter_template,
        default=lambda vm: vm.app.default_dispvm,
        doc="Disposable template (an AppVM) this domain starts from.",
    )
    dispid = Property(
        type=int,
        setter=_setter_dispid,
        write_once=True,
        doc="Number of this DispVM, behind its name and address.",
    )
    auto_cleanup = Property(
        type=bool,
        default=False,
        doc="Remove this domain from the store when it stops.",
    )

    ip_prefix = "10.138"

    def __init__(self, app: Any, xml: Any, **kwargs: Any) -> None:
        if xml is None and "name" not in kwargs and "dispid" in kwargs:
            kwargs["name"] = f"disp{kwargs['dispid']}"
        super().__init__(app, xml, **kwargs)

    @property
    def ip_number(self) -> int:
        """DispVM addresses come from the dispid."""
        return int(self.dispid)

    @handler("domain-shutdown")
    async def _clean_up(self, event: str, **kwargs: Any) -> None:
        # A disposable domain is thrown away once it stops.
        if not self.auto_cleanup or self not in self.app.domains:
            return
        self.log.info("removing: auto_cleanup is set")
        await self.remove_from_disk()
        del self.app.domains[self]
        self.app.save()

    def default_volume_config(self) -> dict[str, dict[str, str]]:
        """Root and private from the disposable template's, a volatile."""
        return volumes.with_kernel(
            {
                "root": volumes.snapshot_volume(self, "root", self.template),
                "private": volumes.snapshot_volume(
                    self, "private", self.template
                ),
                "volatile": volumes.volatile_volume(self),
            },
            self,
        )
