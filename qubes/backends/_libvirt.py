"""The one libvirt connection layer that every driver uses.

:class:`Connection` opens its URI lazily, on first use. Every libvirt
call goes through :meth:`Connection.call` (or its coroutine form
:meth:`Connection.run`), which

- translates ``libvirtError`` into :mod:`qubes.exc` errors, once, here;
- when the connection was lost (the daemon went away or restarted),
  opens it again and retries the call once — event callbacks are
  registered on the new connection too;
- in :meth:`~Connection.run`, keeps blocking calls off the asyncio loop:
  engines behind a daemon are called from the connection's pool of
  worker threads (:data:`WORKERS`); libvirt's in-process test driver
  answers in microseconds and is called inline.

Lifecycle events: libvirt's own event loop runs in one background thread
per process, and each event is handed to the asyncio loop of whoever
subscribed (``call_soon_threadsafe``). libvirtaio, which runs libvirt's
event loop on an asyncio loop instead, is not used: libvirt accepts one
event loop registration per process, so libvirtaio ties events to the
first asyncio loop for the life of the process, and it is not
thread-safe, so calls made from a worker thread stall its timers. A
process that runs several loops in turn (a tool run twice in-process,
the test suite) or calls libvirt from a worker thread would lose events.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt

from qubes import exc
from qubes.backends import EventCallback, LifecycleEvent
from qubes.backends._errors import first_line, is_connection_lost, translate
from qubes.backends._events import Subscribers, Subscription

__all__ = ["Connection", "LIFECYCLE_EVENTS", "WORKERS"]

#: threads that make blocking calls on one connection: a libvirt
#: connection takes calls from several threads at once, so that twenty
#: domains can start together
WORKERS = 8

log = logging.getLogger(__name__)


def _ignore_error(context: Any, error: Any) -> None:
    # libvirt prints every error on stderr unless a handler is set; the
    # errors reach the caller as exceptions instead.
    pass


libvirt.registerErrorHandler(_ignore_error, None)
_T = TypeVar("_T")

#: libvirt's lifecycle event numbers, in Qubes' words
LIFECYCLE_EVENTS = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: LifecycleEvent.DEFINED,
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: LifecycleEvent.UNDEFINED,
    libvirt.VIR_DOMAIN_EVENT_STARTED: LifecycleEvent.STARTED,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: LifecycleEvent.SUSPENDED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: LifecycleEvent.RESUMED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: LifecycleEvent.STOPPED,
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: LifecycleEvent.SHUTDOWN,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: LifecycleEvent.PMSUSPENDED,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: LifecycleEvent.CRASHED,
}


class _EventThread:
    """libvirt's default event loop, in one daemon thread per process."""

    _lock = threading.Lock()
    _started = False

    @classmethod
    def ensure(cls) -> None:
        """Start the thread unless it runs; before the first open."""
        with cls._lock:
            if cls._started:
                return
            try:
                libvirt.virEventRegisterDefaultImpl()
            except (libvirt.libvirtError, RuntimeError) as err:
                # Someone else registered an event loop in this process;
                # events then arrive through theirs.
                log.warning("libvirt event loop not registered: %s", err)
                cls._started = True
                return
            thread = threading.Thread(
                target=cls._run, name="libvirt-events", daemon=True
            )
            thread.start()
            cls._started = True

    @staticmethod
    def _run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()


class Connection:
    """A lazily opened libvirt connection.

    :param uri: the libvirt URI
    :param inline: call libvirt on the caller's thread even in
        coroutines; by default only for the in-process test driver
    :param before_open: called before each open (the simulated host
        makes its state file there)
    :param after_open: called with each new connection before it is
        used (the simulated host restores transient domains there)
    """

    def __init__(
        self,
        uri: str,
        *,
        inline: bool | None = None,
        before_open: Callable[[], None] | None = None,
        after_open: Callable[[libvirt.virConnect], None] | None = None,
    ) -> None:
        self.uri = uri
        self.before_open = before_open
        self.after_open = after_open
        self.inline = uri.startswith("test:") if inline is None else inline
        self._conn: libvirt.virConnect | None = None
        self._callback_id: int | None = None
        self._subscribers = Subscribers()
        self._lock = threading.RLock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        return f"<Connection {self.uri} {state}>"

    @property
    def is_open(self) -> bool:
        """Whether the connection is open now."""
        return self._conn is not None

    @property
    def raw_or_none(self) -> libvirt.virConnect | None:
        """The open ``libvirt.virConnect``, or None; opens nothing."""
        return self._conn

    def _open(self) -> libvirt.virConnect:
        with self._lock:
            if self._conn is not None:
                return self._conn
            _EventThread.ensure()
            if self.before_open is not None:
                self.before_open()
            log.debug("opening %s", self.uri)
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as err:
                hint = ""
                if self.uri.startswith("test:///") and self.uri.endswith(
                    ".xml"
                ):
                    hint = (
                        " (if the simulated host's state file is damaged, "
                        "removing it starts afresh, with every domain "
                        "halted)"
                    )
                raise exc.QubesConnectionError(
                    f"cannot connect to {self.uri}: {first_line(err)}{hint}"
                ) from err
            if self.after_open is not None:
                self.after_open(conn)
            self._conn = conn
            self._register(conn)
            return conn

    def _register(self, conn: libvirt.virConnect) -> None:
        self._callback_id = conn.domainEventRegisterAny(
            None,
            libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            self._on_lifecycle,
            None,
        )
        # The test driver has no close callbacks.
        with contextlib.suppress(libvirt.libvirtError):
            conn.registerCloseCallback(self._on_close, None)

    def _on_close(self, conn: Any, reason: int, opaque: Any) -> None:
        log.info("connection to %s closed (reason %d)", self.uri, reason)
        with self._lock:
            if self._conn is conn:
                self._conn = None
                self._callback_id = None

    def _on_lifecycle(
        self, conn: Any, dom: Any, event: int, detail: int, opaque: Any
    ) -> None:
        kind = LIFECYCLE_EVENTS.get(event)
        if kind is None:
            return
        uuid = dom.UUIDString()
        log.debug("event %s %s (detail %d)", uuid, kind.value, detail)
        self._subscribers.deliver(uuid, kind)

    def reset(self) -> None:
        """Drop the connection; the next call opens a new one."""
        with self._lock:
            conn, self._conn = self._conn, None
            self._callback_id = None
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def close(self) -> None:
        """Close the connection and stop the worker thread."""
        self.reset()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def call(
        self,
        op: str,
        func: Callable[[libvirt.virConnect], _T],
        vm: Any = None,
    ) -> _T:
        """Call ``func(conn)``, translating errors, reconnecting once.

        :param op: the operation's name, for errors and logs
        :param vm: the domain concerned, for errors
        """
        for attempt in (1, 2):
            conn = self._conn or self._open()
            log.debug("%s: %s", self.uri, op)
            try:
                return func(conn)
            except libvirt.libvirtError as err:
                if attempt == 1 and is_connection_lost(err):
                    log.warning("%s lost during %s; reconnecting", self.uri, op)
                    self.reset()
                    continue
                raise translate(err, op, self.uri, vm) from err
        raise AssertionError("unreachable")  # pragma: no cover

    async def run(
        self,
        op: str,
        func: Callable[[libvirt.virConnect], _T],
        vm: Any = None,
    ) -> _T:
        """:meth:`call` from a coroutine, off the loop unless inline."""
        if self.inline:
            return self.call(op, func, vm)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                WORKERS, thread_name_prefix="libvirt-call"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.call, op, func, vm
        )

    def subscribe(self, callback: EventCallback) -> Subscription:
        """Deliver lifecycle events to *callback*, on the asyncio loop
        running now (or in the event thread when none runs), from the
        moment the connection is open."""
        return self._subscribers.add(callback)
