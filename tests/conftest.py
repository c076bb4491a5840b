"""Fixtures shared by the suite: a fresh copy of the sample store.

``tests/data/qubes-example.xml`` was written by the Qubes OS reference
implementation. It is read-only in the repository; every test works on
its own writable copy in ``tmp_path``.
"""

import pathlib

import pytest

import qubes
import qubes.app
from qubes.events import handler
from qubes.vm.appvm import AppVM

SAMPLE = pathlib.Path(__file__).parent / "data" / "qubes-example.xml"


@pytest.fixture(autouse=True)
def simulated_host(tmp_path, monkeypatch):
    """Every test runs its domains on a simulated host of its own.

    Whatever daemon the machine runs, a test that does not choose a
    backend gets libvirt's test driver with its state in ``tmp_path``,
    through the environment variable a user would set.
    """
    node = tmp_path / "libvirt-node.xml"
    monkeypatch.setenv("QUBES_LIBVIRT_URI", f"test://{node}")
    monkeypatch.delenv("QUBES_BACKEND", raising=False)
    return node


@pytest.fixture
def sample_bytes():
    """The sample store, as it is in the repository."""
    return SAMPLE.read_bytes()


@pytest.fixture
def sample_path(tmp_path, sample_bytes):
    """A writable copy of the sample, alone in its own folder."""
    path = tmp_path / "qubes.xml"
    path.write_bytes(sample_bytes)
    return path


@pytest.fixture
def app(sample_path):
    """The sample store, loaded."""
    return qubes.Qubes(str(sample_path))


@pytest.fixture
def install_appvm_class(monkeypatch):
    """A function that makes the store build *cls* for ``class="AppVM"``.

    Loaded and new AppVMs then carry the class's handlers from the moment
    they are built.
    """

    original = qubes.app.Qubes.get_vm_class

    def install(cls):
        def get_vm_class(self, name):
            if name == "AppVM":
                return cls
            return original(self, name)

        monkeypatch.setattr(qubes.app.Qubes, "get_vm_class", get_vm_class)

    return install


@pytest.fixture
def recording_appvm(install_appvm_class):
    """An AppVM subclass whose class handler records every event, used
    for every AppVM of the store; ``seen`` lists (domain name, event)."""

    class RecordingAppVM(AppVM):
        seen: list = []

        @property
        def klass(self):
            return "AppVM"

        @handler("*")
        def _record(self, event, **kwargs):
            type(self).seen.append((self.location_name(), event))

    install_appvm_class(RecordingAppVM)
    return RecordingAppVM
