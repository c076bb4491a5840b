"""Fixtures shared by the suite: a fresh copy of the sample store, a
simulated host per test, and libvirt's schema checking every domain XML.

``tests/data/qubes-example.xml`` was written by the Qubes OS reference
implementation. It is read-only in the repository; every test works on
its own writable copy in ``tmp_path``.
"""

import pathlib

import libvirt
import lxml.etree
import pytest

import qubes
import qubes.app
from qubes.backends._base import LibvirtBackend
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


# -- libvirt's schema, checked on every domain XML the suite produces ------

DOMAIN_RNG = pathlib.Path("/usr/share/libvirt/schemas/domain.rng")


def pytest_addoption(parser):
    parser.addoption(
        "--regen-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the builders instead of comparing",
    )


@pytest.fixture
def regen_golden(request):
    """Whether this run rewrites the golden XML files on purpose."""
    return request.config.getoption("--regen-golden")


@pytest.fixture(scope="session")
def _domain_schema_or_none():
    # Compiled once: about 20 ms. None when libvirt's schemas are not
    # installed; the fixtures below decide what that means.
    if not DOMAIN_RNG.is_file():
        return None
    return lxml.etree.RelaxNG(lxml.etree.parse(str(DOMAIN_RNG)))


@pytest.fixture
def domain_schema(_domain_schema_or_none):
    """libvirt's RelaxNG schema of domain XML, compiled."""
    if _domain_schema_or_none is None:
        pytest.skip(f"libvirt's domain schema is not installed: {DOMAIN_RNG}")
    return _domain_schema_or_none


def _check_against(schema, xml):
    try:
        document = lxml.etree.fromstring(xml.encode())
    except lxml.etree.XMLSyntaxError as err:
        pytest.fail(f"domain XML is not well-formed: {err}\n{xml}")
    if not schema.validate(document):
        pytest.fail(
            "domain XML does not follow libvirt's domain.rng:\n"
            f"{schema.error_log}\n{xml}"
        )


@pytest.fixture
def validate_domain_xml(domain_schema):
    """A function that fails the test unless its XML text follows
    libvirt's domain schema; for XML built with the builders directly."""

    def validate(xml: str) -> None:
        _check_against(domain_schema, xml)

    return validate


@pytest.fixture(autouse=True)
def _validate_every_create_config(monkeypatch, _domain_schema_or_none):
    """Every XML that a backend's ``create_config`` returns, in any test,
    is checked against libvirt's schema (when it is installed)."""
    schema = _domain_schema_or_none
    if schema is None:
        return
    original = LibvirtBackend.create_config

    def create_config(self, vm):
        xml = original(self, vm)
        _check_against(schema, xml)
        return xml

    monkeypatch.setattr(LibvirtBackend, "create_config", create_config)


@pytest.fixture
def only_the_test_driver(monkeypatch):
    """Fail the test if anything opens a URI other than the test
    driver's (a system daemon may run on this machine)."""

    def guarded(real):
        def open_uri(uri=None, *args):
            if not str(uri).startswith("test:"):
                raise AssertionError(f"the test opened {uri!r}")
            return real(uri, *args)

        return open_uri

    monkeypatch.setattr(libvirt, "open", guarded(libvirt.open))
    monkeypatch.setattr(libvirt, "openReadOnly", guarded(libvirt.openReadOnly))
