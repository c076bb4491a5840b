"""Which backend and URI a store uses, and why.

Precedence: the tools' --backend/--uri (``app.use_backend``), then
QUBES_BACKEND/QUBES_LIBVIRT_URI, then the store's vmm_backend/vmm_uri,
then auto-detection. Nothing here opens a system URI: backends open
their connection lazily, and only their name and URI are read.
"""

import pytest

import qubes
from qubes import exc
from qubes.backends import choice

pytestmark = pytest.mark.usefixtures("only_the_test_driver")


@pytest.fixture
def clean_env(monkeypatch):
    """No backend in the environment (the suite sets a URI there)."""
    monkeypatch.delenv("QUBES_LIBVIRT_URI", raising=False)
    monkeypatch.delenv("QUBES_BACKEND", raising=False)


@pytest.fixture
def no_hypervisor(monkeypatch):
    """Auto-detection finds neither Xen's dom0 nor a QEMU daemon."""
    monkeypatch.setattr(choice, "_is_xen_dom0", lambda: False)
    monkeypatch.setattr(choice, "_qemu_answers", lambda: False)


def _chosen(app):
    backend = app.backend
    return backend.name, backend.uri


# -- precedence ------------------------------------------------------------


def test_command_line_wins_over_environment_and_store(
    app, monkeypatch, no_hypervisor
):
    monkeypatch.setenv("QUBES_BACKEND", "kvm")
    monkeypatch.setenv("QUBES_LIBVIRT_URI", "qemu:///system")
    app.vmm_backend = "lxc"
    app.use_backend("xen", "test:///default")
    assert _chosen(app) == ("xen", "test:///default")
    assert app.backend_reason.startswith("set by the command line")


def test_environment_wins_over_the_store(app, monkeypatch, no_hypervisor):
    monkeypatch.setenv("QUBES_BACKEND", "kvm")
    monkeypatch.delenv("QUBES_LIBVIRT_URI")
    app.vmm_backend = "lxc"
    app.vmm_uri = "lxc:///system"
    assert _chosen(app) == ("kvm", "qemu:///system")
    assert app.backend_reason.startswith("set by the environment")


def test_store_wins_over_auto_detection(app, clean_env, monkeypatch):
    monkeypatch.setattr(choice, "_is_xen_dom0", lambda: True)
    monkeypatch.setattr(choice, "_qemu_answers", lambda: True)
    app.vmm_backend = "lxc"
    assert _chosen(app) == ("lxc", "lxc:///system")
    assert app.backend_reason.startswith("set by qubes.xml")


def test_store_properties_are_read_from_qubes_xml(
    sample_path, clean_env, no_hypervisor
):
    first = qubes.Qubes(str(sample_path))
    first.vmm_backend = "kvm"
    first.vmm_uri = "test:///default"
    first.save()
    app = qubes.Qubes(str(sample_path))
    assert _chosen(app) == ("kvm", "test:///default")
    assert app.backend_reason.startswith("set by qubes.xml")


def test_command_line_uri_alone_wins_over_environment_backend(app, monkeypatch):
    monkeypatch.setenv("QUBES_BACKEND", "kvm")
    app.use_backend(None, "lxc:///system")
    assert _chosen(app) == ("lxc", "lxc:///system")


def test_backend_given_to_the_store_is_used_as_it_is(sample_path):
    backend = qubes.backends.get_backend("lxc", uri="test:///default")
    app = qubes.Qubes(str(sample_path), backend=backend)
    assert app.backend is backend
    assert app.backend_reason == "given by the caller"


def test_use_backend_replaces_the_previous_choice(app):
    first = app.backend
    app.use_backend("kvm", "test:///default")
    assert app.backend is not first
    assert _chosen(app) == ("kvm", "test:///default")


# -- a URI alone, a backend alone ------------------------------------------


@pytest.mark.parametrize(
    ("uri", "backend"),
    [
        ("qemu:///system", "kvm"),
        ("qemu:///session", "kvm"),
        ("lxc:///system", "lxc"),
        ("xen:///system", "xen"),
        ("test:///default", "xen"),
    ],
)
def test_uri_alone_implies_its_backend(app, uri, backend):
    app.use_backend(None, uri)
    assert _chosen(app) == (backend, uri)


@pytest.mark.parametrize(
    ("uri", "backend"),
    [
        ("qemu+ssh://host.invalid/system", "kvm"),
        ("qemu+unix:///system?socket=/tmp/x", "kvm"),
        ("lxc+ssh://host.invalid/", "lxc"),
        ("xen+tls://host.invalid/", "xen"),
    ],
)
def test_remote_uri_implies_the_backend_of_its_driver(uri, backend):
    assert choice.backend_for_uri(uri) == backend


@pytest.mark.parametrize(
    ("backend", "uri"),
    [
        ("xen", "xen:///system"),
        ("kvm", "qemu:///system"),
        ("lxc", "lxc:///system"),
    ],
)
def test_backend_alone_uses_its_default_uri(app, clean_env, backend, uri):
    app.use_backend(backend)
    assert _chosen(app) == (backend, uri)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("QUBES_BACKEND", "lxc", ("lxc", "lxc:///system")),
        ("QUBES_LIBVIRT_URI", "qemu:///system", ("kvm", "qemu:///system")),
    ],
)
def test_environment_alone(
    app, clean_env, monkeypatch, variable, value, expected
):
    monkeypatch.setenv(variable, value)
    assert _chosen(app) == expected


def test_store_uri_alone_implies_its_backend(app, clean_env, no_hypervisor):
    app.vmm_uri = "lxc:///system"
    assert _chosen(app) == ("lxc", "lxc:///system")


# -- test driver URIs ------------------------------------------------------


def test_node_file_uri_is_a_simulated_host_keeping_that_file(app, tmp_path):
    node = tmp_path / "elsewhere" / "node.xml"
    app.use_backend(None, f"test://{node}")
    assert app.backend.capabilities.simulated is True
    assert app.backend.state_file.path == str(node)
    assert app.backend.uri == f"test://{node}"


def test_node_file_uri_with_another_backend_is_simulated_too(app, tmp_path):
    node = tmp_path / "node.xml"
    app.use_backend("lxc", f"test://{node}")
    assert app.backend.name == "lxc"
    assert app.backend.capabilities.simulated is True


def test_default_test_driver_is_not_a_simulated_host(app):
    app.use_backend(None, "test:///default")
    assert app.backend.state_file is None
    assert app.backend.capabilities.simulated is False


def test_suite_default_is_a_simulated_host_in_tmp_path(app, simulated_host):
    assert app.backend.state_file.path == str(simulated_host)
    assert app.backend_reason.startswith("set by the environment")


# -- errors ----------------------------------------------------------------


def test_unknown_backend_name_is_a_named_error(app):
    with pytest.raises(exc.QubesBackendNotFoundError, match="nosuch") as info:
        app.use_backend("nosuch")
    assert isinstance(info.value, KeyError)
    for known in ("xen", "kvm", "lxc"):
        assert known in str(info.value)


def test_unknown_backend_in_the_environment_is_a_named_error(app, monkeypatch):
    monkeypatch.setenv("QUBES_BACKEND", "nosuch")
    monkeypatch.delenv("QUBES_LIBVIRT_URI")
    with pytest.raises(exc.QubesBackendNotFoundError):
        app.backend  # noqa: B018 (the choice happens on first use)


@pytest.mark.parametrize(
    "uri", ["vbox:///session", "nosuch:///x", "/tmp/node.xml"]
)
def test_unknown_uri_scheme_is_a_value_error(app, uri):
    with pytest.raises(exc.QubesValueError, match=r"--backend|libvirt URI"):
        app.use_backend(None, uri)


@pytest.mark.parametrize(
    "uri", ["bogus", "   ", "test:///tmp/x\n.xml", "test:///a b.xml"]
)
def test_a_vmm_uri_that_is_no_libvirt_uri_is_refused(app, uri):
    with pytest.raises(exc.QubesPropertyValueError, match="not a libvirt URI"):
        app.vmm_uri = uri
    assert app.vmm_uri is None


def test_a_uri_option_with_a_newline_touches_no_file(app, tmp_path):
    uri = f"test://{tmp_path}/x\n.xml"
    with pytest.raises(exc.QubesValueError, match="not a libvirt URI"):
        app.use_backend("xen", uri)
    assert not [p for p in tmp_path.iterdir() if "\n" in p.name]


def test_unknown_uri_scheme_in_the_store_says_how_to_reset_it(
    app, clean_env, no_hypervisor
):
    app.vmm_uri = "http://x"
    with pytest.raises(exc.QubesValueError, match=r"qubes-prefs -D vmm_uri"):
        app.backend  # noqa: B018 - the choice is made on first use


def test_a_named_backend_takes_a_uri_of_unknown_scheme_as_it_is(app, clean_env):
    # The backend was named: the URI is the engine's to judge, when the
    # backend opens it.
    app.vmm_uri = "http://x"
    app.use_backend("kvm")
    assert _chosen(app) == ("kvm", "http://x")


def test_store_refuses_an_unknown_vmm_backend(app):
    with pytest.raises(exc.QubesPropertyValueError, match="nosuch"):
        app.vmm_backend = "nosuch"


def test_failed_choice_keeps_the_previous_backend(app):
    before = app.backend
    with pytest.raises(exc.QubesBackendNotFoundError):
        app.use_backend("nosuch")
    assert app.backend is before


# -- auto-detection --------------------------------------------------------


def test_auto_detects_xen_dom0_first(app, clean_env, monkeypatch):
    monkeypatch.setattr(choice, "_is_xen_dom0", lambda: True)
    monkeypatch.setattr(choice, "_qemu_answers", lambda: True)
    assert _chosen(app) == ("xen", "xen:///system")
    assert "dom0" in app.backend_reason
    assert app.backend_reason.startswith("auto-detected")


def test_auto_detects_a_qemu_daemon_next(app, clean_env, monkeypatch):
    monkeypatch.setattr(choice, "_is_xen_dom0", lambda: False)
    monkeypatch.setattr(choice, "_qemu_answers", lambda: True)
    assert _chosen(app) == ("kvm", "qemu:///system")
    assert "QEMU" in app.backend_reason


def test_auto_detection_falls_back_to_a_simulated_host(
    app, sample_path, clean_env, no_hypervisor
):
    node = sample_path.parent / "libvirt-node.xml"
    assert _chosen(app) == ("xen", f"test://{node}")
    assert app.backend.capabilities.simulated is True
    assert app.backend.state_file.path == str(node)
    assert "simulated" in app.backend_reason


def test_auto_detection_runs_only_without_any_setting(
    app, monkeypatch, clean_env
):
    def refuse():
        raise AssertionError("auto-detection ran")

    monkeypatch.setattr(choice, "_is_xen_dom0", refuse)
    monkeypatch.setattr(choice, "_qemu_answers", refuse)
    app.vmm_backend = "lxc"
    assert app.backend.name == "lxc"


# -- describe --------------------------------------------------------------


def test_describe_names_backend_engine_and_uri(app):
    app.use_backend("xen", "test:///default")
    text = app.backend.describe()
    assert text.startswith("backend xen")
    assert "libxl" in text
    assert "test:///default" in text
    assert "\n" not in text


def test_describe_of_a_simulated_host_names_its_file(app, simulated_host):
    text = app.backend.describe()
    assert f"test://{simulated_host}" in text
    assert "simulated host" in text
    assert str(simulated_host) in text
    assert "\n" not in text


@pytest.mark.parametrize(("backend", "engine"), [("lxc", "LXC")])
def test_describe_names_the_engine_of_each_backend(app, backend, engine):
    app.use_backend(backend, "test:///default")
    text = app.backend.describe()
    assert text.startswith(f"backend {backend}")
    assert engine in text


def test_describe_of_kvm_says_which_domain_type(app):
    # On the test driver there is no x86_64 acceleration: qemu (TCG).
    app.use_backend("kvm", "test:///default")
    text = app.backend.describe()
    assert text.startswith("backend kvm")
    assert "domain type qemu" in text


def test_backend_from_the_command_line_runs_on_the_environment_uri(
    app, simulated_host
):
    # --backend alone, with QUBES_LIBVIRT_URI naming a simulated host:
    # the KVM dialect on that simulated host, not qemu:///system.
    app.use_backend("kvm")
    assert _chosen(app) == ("kvm", f"test://{simulated_host}")
    assert app.backend.capabilities.simulated
    assert "backend set by the command line" in app.backend_reason
    assert "URI by the environment" in app.backend_reason


def test_a_higher_place_wins_when_backend_and_uri_disagree(
    app, clean_env, monkeypatch
):
    monkeypatch.setenv("QUBES_LIBVIRT_URI", "qemu:///system")
    app.use_backend("lxc")
    assert _chosen(app) == ("lxc", "lxc:///system")


def test_backend_and_uri_that_disagree_in_one_place_are_refused(app):
    with pytest.raises(exc.QubesValueError, match="lxc"):
        app.use_backend("lxc", "qemu:///system")
