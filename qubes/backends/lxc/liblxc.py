"""The LXC backend on liblxc: containers without a libvirt daemon.

``liblxc:///PATH`` runs containers with liblxc (python-lxc), their
configurations under PATH (liblxc's "lxcpath"). The domain is the same
as on libvirt LXC — :meth:`create_config` gives the same libvirt LXC
XML, which describes it — and liblxc gets it as its own configuration
(:mod:`._lxcconf`).

liblxc has no event API: one watcher thread looks at the containers
this backend started every :data:`POLL` seconds, and reports a
container that stopped (powered off, killed from outside, its init
gone) as a ``stopped`` event. Containers have no UUID on liblxc; the
domain's name is the container's.

A container is started by liblxc's own ``lxc-start`` (package ``lxc``),
not by the binding: liblxc forks its caller to start one, and forking
this process (large, many threads) costs a copy of its page tables per
start and makes starts that run together wait for one another on its
memory map. ``lxc-start`` is small, and is spawned without a fork.

Not done on liblxc, and refused or said where it matters: image volumes
(folders only), memory and CPU limits (see :mod:`._lxcconf`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import shutil
import subprocess
import threading
import uuid as uuid_module
from typing import Any

from qubes import exc
from qubes.backends import (
    Capabilities,
    DomainStats,
    EventCallback,
    LifecycleEvent,
    PowerState,
    Subscription,
)
from qubes.backends._base import bridge_name
from qubes.backends._common import BackendBase
from qubes.backends._events import Subscribers
from qubes.backends.lxc import LXCBackend, _ownership, _xml
from qubes.backends.lxc._lxcconf import MULTI_VALUED, lxc_config
from qubes.backends.spec import DomainSpec

__all__ = ["LiblxcBackend", "LXC_START", "POLL", "SCHEME"]

log = logging.getLogger(__name__)

SCHEME = "liblxc://"
#: seconds between two looks of the watcher
POLL = 0.2
#: liblxc's starter program; it returns once the container runs
LXC_START = "lxc-start"
#: seconds a container may take to reach RUNNING
START_TIMEOUT = 10

_STATES = {
    "STOPPED": PowerState.HALTED,
    "STARTING": PowerState.TRANSIENT,
    "RUNNING": PowerState.RUNNING,
    "STOPPING": PowerState.HALTING,
    "ABORTING": PowerState.HALTING,
    "FREEZING": PowerState.PAUSED,
    "FROZEN": PowerState.PAUSED,
    "THAWED": PowerState.RUNNING,
}


def _lxc() -> Any:
    try:
        import lxc
    except ImportError as err:
        raise exc.QubesConnectionError(
            "liblxc is not available: the python-lxc binding (pip install "
            "lxc, which needs liblxc's headers: apt install lxc-dev) is "
            "missing"
        ) from err
    return lxc


class _Watcher:
    """A thread that notices containers that stopped."""

    def __init__(self, backend: LiblxcBackend) -> None:
        self.backend = backend
        self.subscribers = Subscribers()
        self._watched: dict[str, str] = {}  # name -> UUID string
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def watch(self, name: str, uuid: str) -> None:
        with self._lock:
            self._watched[name] = uuid
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="liblxc-watch", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            with self._lock:
                watched = dict(self._watched)
            for name, uuid in watched.items():
                if self.backend.container(name).state == "STOPPED":
                    with self._lock:
                        self._watched.pop(name, None)
                    self.subscribers.deliver(uuid, LifecycleEvent.STOPPED)

    def close(self) -> None:
        self._stop.set()


class LiblxcBackend(BackendBase):
    """Domains as containers on liblxc.

    :param uri: ``liblxc:///PATH``, PATH holding the containers'
        configurations
    """

    name = "lxc"
    default_uri = "liblxc:///var/lib/qubes/lxc"
    engine_name = "liblxc"
    unused_volumes = LXCBackend.unused_volumes

    # Containers as on libvirt LXC; only the wiring of the network differs.
    _CAPABILITIES = dataclasses.replace(
        LXCBackend._CAPABILITIES,
        networking="veth into a host bridge per netvm (qbr...)",
    )

    def __init__(self, uri: str | None = None) -> None:
        super().__init__(uri)
        if not self.uri.startswith(SCHEME + "/"):
            raise exc.QubesValueError(
                f"a liblxc URI is liblxc:///PATH, not {self.uri!r}"
            )
        self.lxcpath = self.uri[len(SCHEME) :]
        self._watcher = _Watcher(self)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            32, thread_name_prefix="liblxc"
        )

    @property
    def engine_capabilities(self) -> Capabilities:
        """Containers: pv and pvh domains; no hotplug, no PCI."""
        return self._CAPABILITIES

    def build_xml(self, spec: DomainSpec) -> str:
        """The libvirt LXC XML of *spec*: what the container is."""
        return _xml.build(spec)

    def networks(self, spec: DomainSpec) -> list[str]:
        """The netvm's network, and a netvm's own."""
        return _xml.networks(spec)

    # -- containers ------------------------------------------------------

    def container(self, name: str) -> Any:
        """liblxc's container called *name* (defined or not)."""
        return _lxc().Container(name, self.lxcpath)

    def _log_file(self, name: str) -> str:
        return os.path.join(self.lxcpath, f"{name}.log")

    def _define(self, spec: DomainSpec) -> Any:
        # The container's mapped root must be able to search it.
        os.makedirs(self.lxcpath, mode=0o711, exist_ok=True)
        container = self.container(spec.name)
        container.clear_config()
        for key, value in lxc_config(spec, self._log_file(spec.name)):
            # The Python wrapper sets a key with several values in one go
            # only through the low-level call, one value at a time.
            if key in MULTI_VALUED:
                ok = _lxc()._lxc.Container.set_config_item(
                    container, key, value
                )
            else:
                ok = container.set_config_item(key, value)
            if not ok:
                raise exc.QubesBackendError(
                    f"liblxc refused {key} = {value}", domain=spec.name
                )
        if not container.save_config():
            raise exc.QubesBackendError(
                "liblxc could not save the configuration", domain=spec.name
            )
        return container

    def _start_container(self, spec: DomainSpec) -> None:
        for network in self.networks(spec):
            _ensure_bridge(bridge_name(network))
        container = self._define(spec)
        if container.running:
            raise exc.QubesVMAlreadyRunningError(None, "is already running")
        self._run_starter(spec.name)

    def _run_starter(self, name: str) -> None:
        # In the background (the default): it returns once the container
        # is RUNNING, having closed its output, or fails.
        command = [LXC_START, "--name", name, "--lxcpath", self.lxcpath]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                check=False,
                timeout=START_TIMEOUT,
            )
        except FileNotFoundError as err:
            raise exc.QubesBackendError(
                f"{LXC_START} is not installed (apt install lxc)", domain=name
            ) from err
        except subprocess.TimeoutExpired as err:
            # Ending lxc-start leaves the container it started behind:
            # a failed start must leave nothing running.
            self._stop_quietly(name)
            raise exc.QubesBackendError(
                f"it did not reach RUNNING within {START_TIMEOUT} s",
                domain=name,
            ) from err
        if done.returncode != 0:
            raise exc.QubesBackendError(
                "liblxc could not start it: " + self._first_error(name),
                domain=name,
            )

    def _stop_quietly(self, name: str) -> None:
        """Stop container *name* if it runs; a failure to is logged (the
        start's own error is the one the caller gets)."""
        try:
            container = self.container(name)
            if container.state != "STOPPED":
                container.stop()
        except Exception as err:  # the start's error matters more
            log.warning("%s: not stopped after a failed start: %s", name, err)

    def _first_error(self, name: str) -> str:
        # The first error is the cause; the later ones follow from it.
        try:
            with open(self._log_file(name), encoding="utf-8") as log:
                for line in log:
                    if " ERROR " in line:
                        return line.split(" - ", 2)[-1].strip()
        except OSError:
            return "no log"
        return f"no error in {self._log_file(name)}"

    # -- the protocol --------------------------------------------------------

    async def start(self, vm: Any) -> None:
        """Give the container its folders, define it and start it."""
        spec = self.spec_of(vm)
        await _ownership.prepare_domain(spec, vm)
        try:
            await self._blocking(self._start_container, spec)
        except exc.QubesException as err:
            err.locate(domain=vm.name)
            if isinstance(err, exc.QubesVMError):
                err.vm = vm
            raise
        self._new_qubesdb(vm)
        self._watcher.watch(vm.name, str(vm.uuid))

    def _running(self, vm: Any) -> Any:
        container = self.container(vm.name)
        if not container.running:
            raise exc.QubesVMNotStartedError(vm, "is not running")
        return container

    async def _blocking(self, func: Any, *args: Any) -> Any:
        # liblxc blocks while a container starts or stops: one thread
        # each, so that many can start together.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    async def kill(self, vm: Any) -> None:
        """Stop the container at once."""
        container = self._running(vm)
        await self._blocking(container.stop)

    async def shutdown(self, vm: Any) -> None:
        """Ask the container's init to power off (SIGPWR)."""
        container = self._running(vm)
        await self._blocking(container.shutdown, 0)

    async def pause(self, vm: Any) -> None:
        """Freeze the container."""
        container = self._running(vm)
        if not await self._blocking(container.freeze):
            raise exc.QubesBackendError("liblxc could not freeze it")

    async def unpause(self, vm: Any) -> None:
        """Thaw a frozen container."""
        container = self.container(vm.name)
        if container.state != "FROZEN":
            raise exc.QubesVMNotPausedError(vm, "is not paused")
        if not await self._blocking(container.unfreeze):
            raise exc.QubesBackendError("liblxc could not thaw it")

    async def undefine(self, vm: Any) -> None:
        """Remove the container's configuration (not its folders)."""
        folder = os.path.join(self.lxcpath, vm.name)
        if self.container(vm.name).running:
            return
        await self._blocking(shutil.rmtree, folder, True)

    def get_uuid(self, vm: Any) -> uuid_module.UUID:
        """liblxc knows containers by name: the domain's own UUID."""
        return uuid_module.UUID(str(vm.uuid))

    def get_power_state(self, vm: Any) -> PowerState:
        """The container's state; Halted when there is none."""
        return _STATES.get(self.container(vm.name).state, PowerState.HALTED)

    def get_runtime_id(self, vm: Any) -> int | None:
        """The pid of the container's init, or None."""
        pid = self.container(vm.name).init_pid
        return int(pid) if pid and pid > 0 else None

    def get_stats(self, vm: Any) -> DomainStats:
        """Memory and CPU time from the container's cgroup."""
        container = self._running(vm)
        memory = _cgroup_int(container, "memory.usage_in_bytes") // 1024
        cpu = _cgroup_int(container, "cpuacct.usage")
        top = max(vm.maxmem, vm.memory) * 1024
        return DomainStats(
            memory_kib=max(memory, 1),
            max_memory_kib=top,
            cpu_time_ns=cpu,
            vcpus=vm.vcpus,
        )

    def libvirt_domain(self, vm: Any) -> None:
        """None: liblxc is not libvirt."""
        return None

    def subscribe(self, callback: EventCallback) -> Subscription:
        """Deliver stops of the containers this backend started."""
        return self._watcher.subscribers.add(callback)

    def describe(self) -> str:
        """One line for the tools."""
        return f"backend lxc (liblxc), containers under {self.lxcpath}"

    def close(self) -> None:
        """Stop the watcher and the threads."""
        self._watcher.close()
        self._executor.shutdown(wait=False)


def _cgroup_int(container: Any, key: str) -> int:
    try:
        return int(container.get_cgroup_item(key) or 0)
    except (ValueError, KeyError):
        return 0


def _ensure_bridge(name: str) -> None:
    """Make host bridge *name* unless it is there; liblxc plugs veths
    into it."""
    if os.path.exists(os.path.join("/sys/class/net", name)):
        return
    for command in (
        ["ip", "link", "add", "name", name, "type", "bridge"],
        ["ip", "link", "set", name, "up"],
    ):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 and "File exists" not in done.stderr:
            raise exc.QubesBackendError(
                f"cannot make bridge {name}: {done.stderr.strip()}"
            )
