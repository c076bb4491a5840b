"""AdminVM: dom0, the domain that manages the others.

dom0 is always there, always qid 0, named ``dom0``, with the all-zero
UUID. It is not started or stopped by this package.
"""

from __future__ import annotations

import uuid
from typing import Any

from qubes import exc
from qubes.properties import Property, VMProperty
from qubes.vm import BaseVM
from qubes.vm.mix.dvmtemplate import setter_dispvm

__all__ = ["AdminVM", "DOM0_UUID"]

DOM0_UUID = uuid.UUID(int=0)


def _setter_fixed(vm: Any, prop: Property, value: Any) -> Any:
    fixed = prop.get_default(vm)
    if str(value) != str(fixed):
        raise exc.QubesPropertyValueError(
            f"dom0's {prop.__name__} is always {fixed}", value=value
        )
    return fixed


class AdminVM(BaseVM):
    """dom0."""

    name = Property(
        type=str, setter=_setter_fixed, default="dom0", doc="Always dom0."
    )
    qid = Property(type=int, setter=_setter_fixed, default=0, doc="Always 0.")
    uuid = Property(
        setter=_setter_fixed, default=DOM0_UUID, doc="Always the all-zero UUID."
    )
    default_dispvm = VMProperty(
        allow_none=True,
        setter=setter_dispvm,
        default=lambda vm: vm.app.default_dispvm,
        doc="Disposable template for DispVMs started from dom0.",
    )

    uuid_is_generated = False

    def location_name(self) -> str:
        """dom0 is always called dom0."""
        return "dom0"

    def get_power_state(self) -> str:
        """dom0 runs whenever this code runs."""
        return "Running"

    def _not_managed(self, action: str) -> exc.QubesVMError:
        return exc.QubesVMError(
            self, f"dom0 cannot be {action}: it runs this code"
        )

    async def start(self) -> None:
        """Refused: dom0 is not started by this package."""
        raise self._not_managed("started")

    async def shutdown(self, **kwargs: Any) -> None:
        """Refused: dom0 is not shut down by this package."""
        raise self._not_managed("shut down")

    async def kill(self) -> None:
        """Refused: dom0 is not killed by this package."""
        raise self._not_managed("killed")

    async def pause(self) -> None:
        """Refused: dom0 is not paused by this package."""
        raise self._not_managed("paused")

    async def unpause(self) -> None:
        """Refused: dom0 is never paused."""
        raise self._not_managed("unpaused")

    def create_config_file(self) -> str:
        """Refused: dom0 has no libvirt domain XML of this package."""
        raise exc.QubesUnsupportedError(
            "dom0 is not defined by a backend", domain="dom0"
        )

    def is_running(self) -> bool:
        """dom0 runs whenever this code runs."""
        return True

    def is_halted(self) -> bool:
        """dom0 is never halted."""
        return False
