"""Handing engine events to their subscribers, across threads.

Engines report events from a thread of their own (libvirt's event loop,
the liblxc watcher). Each subscriber gets them on the asyncio loop that
was running when it subscribed, or directly when none was.
"""

from __future__ import annotations

import asyncio
import threading

from qubes.backends import EventCallback, LifecycleEvent

__all__ = ["Subscribers", "Subscription"]


class Subscription:
    """One subscriber; :meth:`cancel` ends it."""

    def __init__(
        self,
        owner: Subscribers,
        callback: EventCallback,
        loop: asyncio.AbstractEventLoop | None,
    ) -> None:
        self.owner = owner
        self.callback = callback
        self.loop = loop

    def deliver(self, uuid: str, event: LifecycleEvent) -> None:
        loop = self.loop
        if loop is None:
            self.callback(uuid, event)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self.callback, uuid, event)

    def cancel(self) -> None:
        """Stop delivering events to this subscriber."""
        self.owner.remove(self)


class Subscribers:
    """Everyone who asked for an engine's events."""

    def __init__(self) -> None:
        self._all: list[Subscription] = []
        self._lock = threading.Lock()

    def add(self, callback: EventCallback) -> Subscription:
        """Subscribe *callback*, on the asyncio loop running now."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        subscription = Subscription(self, callback, loop)
        with self._lock:
            self._all.append(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        """Unsubscribe; nothing if it was not subscribed."""
        with self._lock:
            if subscription in self._all:
                self._all.remove(subscription)

    def deliver(self, uuid: str, event: LifecycleEvent) -> None:
        """Hand an event of domain *uuid* to every subscriber."""
        with self._lock:
            everyone = list(self._all)
        for subscription in everyone:
            subscription.deliver(uuid, event)
