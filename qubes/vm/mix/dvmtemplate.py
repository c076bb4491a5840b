"""The disposable-template role: an AppVM that DispVMs are started from."""

from __future__ import annotations

from typing import Any

from qubes import exc
from qubes.properties import Property

__all__ = ["DVMTemplateMixin", "setter_dispvm"]


#: properties that must name a disposable template
_DISPVM_REFERENCES = ("default_dispvm", "management_dispvm")


def _setter_template_for_dispvms(vm: Any, prop: Property, value: bool) -> bool:
    if not value and vm.events_enabled:
        users = sorted(d.name for d in vm.dispvms)
        users += [
            where
            for where in vm.app.references_to(vm)
            if where.rsplit(".", 1)[-1].split()[-1] in _DISPVM_REFERENCES
        ]
        if users:
            raise exc.QubesPropertyValueError(
                "still the disposable template of " + ", ".join(users),
                value=value,
            )
    return value


def setter_dispvm(holder: Any, prop: Property, value: Any) -> Any:
    """Validate a disposable template: it has template_for_dispvms."""
    if value is not None and not getattr(value, "template_for_dispvms", 0):
        raise exc.QubesPropertyValueError(
            f"{value.name!r} is not a disposable template", value=value
        )
    return value


class DVMTemplateMixin:
    """Makes a domain usable as the template of DispVMs."""

    template_for_dispvms = Property(
        type=bool,
        setter=_setter_template_for_dispvms,
        default=False,
        doc="Whether DispVMs may be based on this domain.",
    )

    @property
    def dispvms(self) -> list[Any]:
        """DispVMs based on this domain."""
        app = self.app  # type: ignore[attr-defined]
        return [
            vm
            for vm in app.domains
            if vm.klass == "DispVM" and vm.template is self
        ]
