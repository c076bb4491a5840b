"""A counter of changes to the domain model, for caches derived from it.

Every change made through the model's own interfaces — setting or
resetting any property of any domain or of the store, changing a
feature, assigning a device, adding, removing or renaming a domain,
resetting a domain's volumes — adds one. A value computed from the model
(a property's computed default, a backend's view of a domain) can be
reused for as long as the counter has not moved.

Changes made behind those interfaces (editing ``vm.volume_config``, the
store's ``pools`` or a pool's ``config`` dictionary in place) are not
counted; whoever does so calls ``vm.storage.invalidate()`` or
:func:`bump`.
"""

from __future__ import annotations

__all__ = ["bump", "current", "value"]

#: The number of changes so far: read it (``generation.value``), never
#: set it. Hot paths read it instead of calling :func:`current`; a
#: function call costs ten times an attribute.
value = 0


def bump() -> None:
    """Count one change."""
    global value
    value += 1


def current() -> int:
    """The number of changes so far."""
    return value
