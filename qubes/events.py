"""Events: named notifications that objects fire and handlers receive.

A handler is a callable ``handler(subject, event, **kwargs)``. It is
declared either on a class, by decorating a method with :func:`handler`,
or on one object with :meth:`Emitter.add_handler`. Class handlers of a
base class run before those of a subclass, and instance handlers last.

A handler name may end in ``*``: ``property-set:*`` receives every event
whose name starts with ``property-set:``, and ``*`` receives all. Class
handlers run in the order of the class hierarchy (base classes first),
whatever name they matched by.

Events fired with :meth:`Emitter.fire_event` are synchronous and their
handlers must be plain functions; :meth:`Emitter.fire_event_async` also
awaits handlers that are coroutine functions, in the same order. An
event whose name is a "pre" event (``pre_event=True``) lets a handler
veto the action by raising; the exception reaches the caller unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

__all__ = ["handler", "matches", "Emitter", "Handler"]

Handler = Callable[..., Any]
_F = TypeVar("_F", bound=Callable[..., Any])

_HANDLER_ATTR = "_qubes_event_names"


def handler(*events: str) -> Callable[[_F], _F]:
    """Mark a method as the handler of one or more events.

    :param events: event names, each possibly ending in ``*``
    """
    if not events:
        raise TypeError("handler() needs at least one event name")

    def decorator(func: _F) -> _F:
        names = getattr(func, _HANDLER_ATTR, ())
        setattr(func, _HANDLER_ATTR, tuple(names) + events)
        return func

    return decorator


def matches(name: str, event: str) -> bool:
    """Whether a handler declared for *name* receives *event*."""
    if name.endswith("*"):
        return event.startswith(name[:-1])
    return name == event


class Emitter:
    """An object that fires events.

    Events are delivered only while :attr:`events_enabled` is true; the
    store keeps it false while it loads, so that handlers never see a
    half-built object.
    """

    #: (event name, handler) declared on this class and its bases, base
    #: classes first
    _class_handlers: ClassVar[tuple[tuple[str, Handler], ...]] = ()
    #: per-class cache: event name -> class handlers that receive it
    _resolved: ClassVar[dict[str, tuple[Handler, ...]]] = {}

    events_enabled: bool = False
    #: (event name, handler) added with :meth:`add_handler`
    _instance_handlers: list[tuple[str, Handler]] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Walk the whole MRO, not only Emitter bases: mixins that are not
        # emitters themselves declare handlers too.
        declared: list[tuple[str, Handler]] = []
        for klass in reversed(cls.__mro__):
            for attr in klass.__dict__.values():
                for name in getattr(attr, _HANDLER_ATTR, ()):
                    declared.append((name, attr))
        cls._class_handlers = tuple(declared)
        cls._resolved = {}

    def add_handler(self, event: str, func: Handler) -> None:
        """Deliver *event* to *func* for this object only.

        :param event: an event name, possibly ending in ``*``
        :param func: called as ``func(self, event, **kwargs)``
        """
        if self._instance_handlers is None:
            self._instance_handlers = []
        self._instance_handlers.append((event, func))

    def remove_handler(self, event: str, func: Handler) -> None:
        """Stop delivering *event* to *func*; a no-op when not added."""
        handlers = self._instance_handlers or []
        if (event, func) in handlers:
            handlers.remove((event, func))

    def _handlers_for(self, event: str) -> Sequence[Handler]:
        cls = type(self)
        found = cls._resolved.get(event)
        if found is None:
            found = tuple(
                func
                for name, func in cls._class_handlers
                if matches(name, event)
            )
            cls._resolved[event] = found
        own = self._instance_handlers
        if not own:
            return found
        return list(found) + [f for n, f in own if matches(n, event)]

    def fire_event(
        self, event: str, pre_event: bool = False, **kwargs: Any
    ) -> list[Any]:
        """Fire a synchronous event.

        :param event: the event name
        :param pre_event: true when a handler may veto by raising
        :returns: what the handlers returned, ``None`` results left out
        :raises TypeError: a handler is a coroutine function
        """
        if not self.events_enabled:
            return []
        results = []
        for func in self._handlers_for(event):
            result = func(self, event, **kwargs)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(
                    f"handler {func.__qualname__} of {event!r} is async; "
                    "fire it with fire_event_async"
                )
            if result is not None:
                results.append(result)
        return results

    async def fire_event_async(
        self, event: str, pre_event: bool = False, **kwargs: Any
    ) -> list[Any]:
        """Fire an event whose handlers may be coroutines.

        Handlers run one after the other, in the order of
        :meth:`fire_event`; a coroutine is awaited before the next.

        :returns: what the handlers returned, ``None`` results left out
        """
        if not self.events_enabled:
            return []
        results = []
        for func in self._handlers_for(event):
            result = func(self, event, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                results.append(result)
        return results
