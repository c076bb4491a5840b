"""What a backend defined in its engine, so that an unchanged domain is
not defined again at each start.

Defining a domain makes the engine parse and check its whole XML; on
libvirt's test driver that is half the cost of a start. A restart of a
domain whose XML did not change can start the definition already there.
It may only if that definition is still the one this backend made:

- on the same connection (a reconnected engine may have been changed);
- with the same XML;
- and not defined or undefined by anyone since — every definition
  change raises a lifecycle event, and the events of this backend's own
  definitions are counted off, so any other one means "changed".
"""

from __future__ import annotations

import threading
import uuid as uuid_module
from typing import Any

from qubes.backends import LifecycleEvent

__all__ = ["Definitions"]

_CHANGES = (LifecycleEvent.DEFINED, LifecycleEvent.UNDEFINED)


class Definitions:
    """The definitions one backend made, per domain UUID."""

    def __init__(self) -> None:
        self._made: dict[uuid_module.UUID, tuple[Any, str]] = {}
        self._own_events: dict[uuid_module.UUID, int] = {}
        self._lock = threading.Lock()

    def is_current(self, key: uuid_module.UUID, conn: Any, xml: str) -> bool:
        """Whether the engine holds the definition made from *xml* on
        *conn*, untouched since."""
        made = self._made.get(key)
        return made is not None and made[0] is conn and made[1] == xml

    def defining(self, key: uuid_module.UUID) -> None:
        """A definition is about to be made: expect its event."""
        with self._lock:
            self._own_events[key] = self._own_events.get(key, 0) + 1
            self._made.pop(key, None)

    def defined(self, key: uuid_module.UUID, conn: Any, xml: str) -> None:
        """The definition from *xml* was made on *conn*."""
        self._made[key] = (conn, xml)

    def forget(self, key: uuid_module.UUID) -> None:
        """The definition is gone, or no longer known to be ours."""
        self._made.pop(key, None)

    def on_event(self, uuid: str, event: LifecycleEvent) -> None:
        """An engine event: a definition change that is not one of ours
        makes the definition unknown."""
        if event not in _CHANGES:
            return
        key = uuid_module.UUID(uuid)
        with self._lock:
            own = self._own_events.get(key, 0)
            if event is LifecycleEvent.DEFINED and own:
                self._own_events[key] = own - 1
                return
            self._made.pop(key, None)
