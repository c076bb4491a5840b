"""The conformance suite: what every backend must do, on every engine.

Each test takes the ``host`` fixture: a store of its own (a template,
a netvm ``sys-net``, an AppVM ``work``, a disposable template ``dvm``)
whose domains run on one engine. Which engines run is chosen with
``--engine NAME`` (repeatable) or ``QUBES_TEST_ENGINES`` (comma-
separated); by default the three backends on libvirt's test driver.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import pytest

import qubes
import qubes.backends
from qubes.backends.simulated import NodeFile

#: engine name -> (backend, kind of engine)
ENGINES = {
    "xen-test": ("xen", "test"),
    "kvm-test": ("kvm", "test"),
    "lxc-test": ("lxc", "test"),
}
DEFAULT_ENGINES = ("xen-test", "kvm-test", "lxc-test")
KERNEL = "6.1.0-test"


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

    engine: str
    app: Any
    root: pathlib.Path
    events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def backend(self) -> Any:
        return self.app.backend

    def vm(self, name: str) -> Any:
        return self.app.domains[name]

    def record(self, *names: str) -> None:
        """Record every ``domain-*`` event of these domains."""
        for name in names:
            self.vm(name).add_handler("domain-*", self._record)

    def _record(self, vm: Any, event: str, **kwargs: Any) -> None:
        self.events.append((vm.name, event))

    def events_of(self, name: str) -> list[str]:
        return [event for who, event in self.events if who == name]


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    """Poll *predicate* until true; fail after *timeout* seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        await asyncio.sleep(0.01)


def _test_driver_backend(name: str, root: pathlib.Path) -> Any:
    # A node file of its own: the test driver's private state, so that
    # tests do not see each other's domains. Built directly, not through
    # the backend choice, so it is an engine with real storage checks,
    # not the simulated host.
    node = root / "engine-node.xml"
    NodeFile(str(node)).before_open()
    return qubes.backends.get_backend(name, uri=f"test://{node}")


def _install_kernel(root: pathlib.Path) -> pathlib.Path:
    kernels = root / "vm-kernels"
    version = kernels / KERNEL
    version.mkdir(parents=True)
    for name in ("vmlinuz", "initramfs"):
        (version / name).write_bytes(b"")
    return kernels


def _make_store(root: pathlib.Path, backend: Any) -> Any:
    path = root / "qubes.xml"
    qubes.Qubes.create_empty_store(str(path))
    app = qubes.Qubes(str(path), backend=backend)
    _install_kernel(root)  # where the store's linux-kernel pool looks
    app.default_kernel = KERNEL
    template = app.add_new_vm("TemplateVM", name="tpl", label="black")
    app.default_template = template
    net = app.add_new_vm(
        "AppVM", name="sys-net", label="red", provides_network=True
    )
    net.netvm = None
    app.default_netvm = net
    dvm = app.add_new_vm(
        "AppVM", name="dvm", label="red", template_for_dispvms=True
    )
    app.default_dispvm = dvm
    app.add_new_vm("AppVM", name="work", label="blue")
    app.save()

    async def create_volumes() -> None:
        for vm in app.domains:
            if vm.qid:
                await vm.create_on_disk()

    asyncio.run(create_volumes())
    return app


@pytest.fixture
def host(engine: str, tmp_path: pathlib.Path) -> Any:
    """A fresh store on *engine*; every domain is killed at the end."""
    backend_name, kind = ENGINES[engine]
    if kind != "test":
        pytest.skip(f"engine {engine} is not available in this run")
    backend = _test_driver_backend(backend_name, tmp_path)
    app = _make_store(tmp_path, backend)
    yield Host(engine, app, tmp_path)
    _stop_everything(app)
    backend.close()


def _stop_everything(app: Any) -> None:
    async def stop() -> None:
        for vm in list(app.domains):
            if vm.qid and vm.is_running():
                await vm.kill()

    asyncio.run(stop())
