"""The conformance suite: what every backend must do, on every engine.

Each test takes the ``host`` fixture: a store of its own (a template
``tpl``, a netvm ``sys-net``, an AppVM ``work``, a disposable template
``dvm``) whose domains run on one engine. Which engines run is chosen
with ``--engine NAME`` (repeatable) or ``QUBES_TEST_ENGINES`` (comma-
separated); by default the three backends on libvirt's test driver.
Real engines (``kvm-qemu``, ``lxc-libvirt``) need root, a running
libvirtd (``scripts/libvirtd-ctl start``) and the test template
(``scripts/build-template``); where they are missing, their tests are
skipped with the reason.

On a real engine, domains get a name prefix of their own in each test
(``host.vm("work")`` finds it), since the engine outlives the test.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from engines import (
    ENGINES,
    Engine,
    make_engine,
    make_store,
    prefix_for,
    ready_boot,
)

DEFAULT_ENGINES = ("xen-test", "kvm-test", "lxc-test")


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--engine",
        action="append",
        default=[],
        help="run the conformance suite on this engine: " + ", ".join(ENGINES),
    )


def _selected(config: Any) -> list[str]:
    names = list(config.getoption("--engine"))
    if not names:
        env = os.environ.get("QUBES_TEST_ENGINES", "")
        names = [n.strip() for n in env.split(",") if n.strip()]
    for name in names:
        if name not in ENGINES:
            raise pytest.UsageError(
                f"unknown engine {name!r}; known: {', '.join(ENGINES)}"
            )
    return names or list(DEFAULT_ENGINES)


def pytest_generate_tests(metafunc: Any) -> None:
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", _selected(metafunc.config))


@dataclass
class Host:
    """A store and its domains on one engine, for one test."""

    engine: Engine
    app: Any
    root: pathlib.Path
    prefix: str
    events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def backend(self) -> Any:
        return self.app.backend

    def vm(self, name: str) -> Any:
        """The domain the test calls *name* (its real name may carry the
        test's prefix)."""
        return self.app.domains[self.prefix + name]

    def short(self, vm: Any) -> str:
        return str(vm.name)[len(self.prefix) :]

    def record(self, *names: str) -> None:
        """Record every ``domain-*`` event of these domains."""
        for name in names:
            self.vm(name).add_handler("domain-*", self._record)

    def _record(self, vm: Any, event: str, **kwargs: Any) -> None:
        self.events.append((self.short(vm), event))

    def events_of(self, name: str) -> list[str]:
        return [event for who, event in self.events if who == name]

    # -- guests (real engines) --------------------------------------------

    async def booted(self, name: str, boot: int, timeout: float = 90) -> None:
        """Wait until the guest's init reports boot number *boot* ready:
        its marker written and its rc.local run (a probe in rc.local
        that a shutdown cut short would leave half a result)."""
        vm = self.vm(name)

        def done() -> bool:
            return ready_boot(self.engine.console(vm), vm.name) >= boot

        await wait_for(done, timeout)

    def private_read(self, name: str, path: str) -> str | None:
        return self.engine.private_read(self.vm(name), path)

    def private_write(self, name: str, path: str, text: str) -> None:
        self.engine.private_write(self.vm(name), path, text)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll *predicate* until true; fail after *timeout* seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        await asyncio.sleep(0.05)


@pytest.fixture
def host(engine: str, tmp_path: pathlib.Path) -> Any:
    """A fresh store on *engine*; what it ran is cleaned up after."""
    chosen = make_engine(engine)
    reason = chosen.unavailable()
    if reason is not None:
        pytest.skip(f"engine {engine} is not available here: {reason}")
    prefix = prefix_for(chosen)
    app = make_store(chosen, tmp_path, prefix)
    try:
        yield Host(chosen, app, tmp_path, prefix)
    finally:
        _stop_everything(app)
        chosen.teardown(app)
        app.backend.close()


def _stop_everything(app: Any) -> None:
    async def stop() -> None:
        for vm in list(app.domains):
            if vm.qid and vm.is_running():
                await vm.kill()

    asyncio.run(stop())


@pytest.fixture
def real(host: Host) -> Host:
    """The host, on an engine that runs guests."""
    if not host.engine.real:
        pytest.skip("the test driver runs no guest")
    return host
