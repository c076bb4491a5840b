"""Domain XML from values that a backend must refuse or escape.

Markup characters in a value come out as text, never as elements;
characters XML cannot carry are refused with a :mod:`qubes.exc` error;
a virt mode or boot the engine cannot do is a named "unsupported"
error; a kernel missing from the kernel pool stops the start before the
engine defines anything.
"""

import asyncio

import lxml.etree
import pytest

import qubes
from qubes import exc
from qubes.backends import get_backend

BACKENDS = {
    "xen": lambda: get_backend("xen", uri="test:///default"),
    "kvm": lambda: get_backend(
        "kvm", uri="test:///default", domain_type="qemu"
    ),
    "lxc": lambda: get_backend("lxc", uri="test:///default"),
}

MARKUP = [
    "a<b>c",
    "x & y",
    "say \"hi\" and 'bye'",
    "</cmdline><evil/>",
    "</init><evil/><init>",
    "]]>",
    "&amp; &#x41; &lt;",
    "<!-- c --><?pi x?>",
]
UNWRITABLE = ["\x01", "\x00", "\x1b[0m", "\ufffe", "\ud800"]


def _app(sample_path, backend):
    return qubes.Qubes(str(sample_path), backend=BACKENDS[backend]())


def _xml_of(app, name="work"):
    return lxml.etree.fromstring(app.backend.create_config(app.domains[name]))


# -- virt modes a backend does not run -------------------------------------


@pytest.mark.parametrize(("backend", "mode"), [("kvm", "pv"), ("lxc", "hvm")])
def test_unsupported_virt_mode_is_named(sample_path, backend, mode):
    app = _app(sample_path, backend)
    work = app.domains["work"]
    work.virt_mode = mode
    with pytest.raises(exc.QubesUnsupportedError) as info:
        app.backend.create_config(work)
    assert info.value.domain == "work"
    assert info.value.prop == "virt_mode"
    assert repr(mode) in str(info.value)
    assert "domain 'work'" in str(info.value)


def test_lxc_refuses_the_hvm_netvm_of_the_sample(sample_path):
    app = _app(sample_path, "lxc")
    with pytest.raises(exc.QubesUnsupportedError, match="'hvm'"):
        app.backend.create_config(app.domains["sys-net"])


@pytest.mark.parametrize("mode", ["pv", "pvh"])
def test_xen_domain_booting_the_pool_kernel_needs_a_kernel(sample_path, mode):
    app = _app(sample_path, "xen")
    work = app.domains["work"]
    work.virt_mode = mode
    work.kernel = ""
    with pytest.raises(exc.QubesUnsupportedError) as info:
        app.backend.create_config(work)
    assert info.value.domain == "work"
    assert info.value.prop == "kernel"


def test_kvm_pvh_without_a_kernel_is_refused(sample_path):
    app = _app(sample_path, "kvm")
    work = app.domains["work"]
    work.kernel = ""
    with pytest.raises(exc.QubesUnsupportedError, match="no kernel"):
        app.backend.create_config(work)


# -- markup characters are text --------------------------------------------


@pytest.mark.parametrize("value", MARKUP)
@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_kernelopts_markup_comes_out_as_text(sample_path, backend, value):
    app = _app(sample_path, backend)
    app.domains["work"].kernelopts = value
    root = _xml_of(app)
    cmdline = root.find("os/cmdline")
    assert cmdline.text.endswith(" " + value)
    assert len(cmdline) == 0
    assert root.find(".//evil") is None
    assert len(root.findall("os/cmdline")) == 1


@pytest.mark.parametrize("value", MARKUP)
def test_lxc_init_markup_comes_out_as_text(sample_path, value):
    # libvirt wants an absolute path there
    value = "/" + value
    app = _app(sample_path, "lxc")
    app.domains["work"].features["lxc.init"] = value
    root = _xml_of(app)
    init = root.find("os/init")
    assert init.text == value
    assert len(init) == 0
    assert root.find(".//evil") is None
    assert len(root.findall("os/init")) == 1


# -- characters XML cannot carry are refused -------------------------------


@pytest.mark.parametrize("value", UNWRITABLE, ids=ascii)
@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_kernelopts_control_character_is_a_qubes_error(
    sample_path, backend, value
):
    app = _app(sample_path, backend)
    with pytest.raises(exc.QubesException):
        app.domains["work"].kernelopts = "quiet " + value
        app.backend.create_config(app.domains["work"])


@pytest.mark.parametrize("value", UNWRITABLE, ids=ascii)
def test_lxc_init_control_character_is_a_qubes_error(sample_path, value):
    app = _app(sample_path, "lxc")
    with pytest.raises(exc.QubesException):
        app.domains["work"].features["lxc.init"] = "/sbin/init" + value
        app.backend.create_config(app.domains["work"])


@pytest.mark.parametrize("value", ["sbin/init", "init", " /sbin/init"])
def test_lxc_init_that_is_not_an_absolute_path_is_refused(sample_path, value):
    # libvirt's schema takes only an absolute path for <init>; the
    # builder must say so instead of writing XML the engine refuses.
    app = _app(sample_path, "lxc")
    app.domains["work"].features["lxc.init"] = value
    with pytest.raises(exc.QubesValueError):
        app.backend.create_config(app.domains["work"])


def test_refused_value_leaves_the_next_good_xml_intact(sample_path):
    app = _app(sample_path, "xen")
    work = app.domains["work"]
    # Refused where it is set, before any XML is made of it.
    with pytest.raises(exc.QubesValueError):
        work.kernelopts = "bad\x01"
    work.kernelopts = "good"
    assert _xml_of(app).findtext("os/cmdline").endswith(" good")


# -- a kernel missing from the kernel pool ---------------------------------

REAL_KERNEL = "6.12.1-1.fc41"
MISSING_KERNEL = "6.99.0-1.fc41"


def _write_node_file(path):
    # An empty host in libvirt's test-driver node format.
    node = lxml.etree.Element("node")
    cpu = lxml.etree.SubElement(node, "cpu")
    for tag, text in (("nodes", "1"), ("sockets", "1"), ("cores", "2")):
        lxml.etree.SubElement(cpu, tag).text = text
    lxml.etree.SubElement(cpu, "threads").text = "1"
    lxml.etree.SubElement(node, "memory").text = "8388608"
    path.write_bytes(lxml.etree.tostring(node))
    return path


def _domain_node(root, name):
    (domain,) = root.xpath(
        "domains/domain[properties/property[@name='name']=$n]", n=name
    )
    return domain


def _volumes_on_disk(path):
    """Make every volume of the store at *path* (its pools in tmp)."""
    app = qubes.Qubes(str(path), backend=get_backend("xen", "test:///default"))

    async def create():
        for vm in app.domains:
            if vm.qid:
                await vm.create_on_disk()

    asyncio.run(create())


def _pools_in(root, folder):
    """Point the sample's pools below *folder*; the kernel pool's path."""
    (files,) = root.xpath("pools/pool[@name='varlibqubes']")
    files.set("dir_path", str(folder / "varlibqubes"))
    kernels = folder / "vm-kernels"
    (kernels / REAL_KERNEL).mkdir(parents=True)
    for name in ("vmlinuz", "initramfs"):
        (kernels / REAL_KERNEL / name).write_bytes(b"")
    (pool,) = root.xpath("pools/pool[@name='linux-kernel']")
    pool.set("dir_path", str(kernels))
    return kernels


@pytest.fixture
def kernel_store(tmp_path, sample_path):
    """The sample with its pools in tmp_path and its volumes made, the
    kernel pool holding only REAL_KERNEL (empty files); work uses
    MISSING_KERNEL."""
    root = lxml.etree.parse(str(sample_path)).getroot()
    _pools_in(root, tmp_path)
    work = _domain_node(root, "work")
    lxml.etree.SubElement(
        work.find("properties"), "property", name="kernel"
    ).text = MISSING_KERNEL
    (volume,) = work.xpath("volume-config/volume[@name='kernel']")
    volume.set("vid", MISSING_KERNEL)
    sample_path.write_bytes(lxml.etree.tostring(root))
    _volumes_on_disk(sample_path)
    return sample_path


@pytest.fixture
def engine(tmp_path):
    """A xen backend on a node file of its own: an engine, not a
    simulated host, so volumes are checked."""
    node = _write_node_file(tmp_path / "engine-node.xml")
    return get_backend("xen", uri=f"test://{node}")


def test_backend_on_a_node_file_uri_is_not_a_simulated_host(engine):
    assert engine.capabilities.simulated is False


def test_start_with_a_missing_kernel_names_the_file(kernel_store, engine):
    app = qubes.Qubes(str(kernel_store), backend=engine)
    work = app.domains["work"]
    with pytest.raises(exc.QubesStorageError) as info:
        asyncio.run(work.start())
    missing = kernel_store.parent / "vm-kernels" / MISSING_KERNEL / "vmlinuz"
    assert str(missing) in str(info.value)
    assert info.value.domain == "work"


def test_start_with_a_missing_kernel_defines_nothing(kernel_store, engine):
    app = qubes.Qubes(str(kernel_store), backend=engine)
    work = app.domains["work"]
    with pytest.raises(exc.QubesStorageError):
        asyncio.run(work.start())
    assert engine.libvirt_domain(work) is None
    assert work.get_power_state() == "Halted"
    # The netvm's kernel is there: it started, and stays.
    assert app.domains["sys-net"].get_power_state() == "Running"


def test_start_with_the_installed_kernel_runs(kernel_store, engine):
    app = qubes.Qubes(str(kernel_store), backend=engine)
    fedora = app.domains["fedora-41"]
    asyncio.run(fedora.start())
    assert fedora.get_power_state() == "Running"


def test_kernel_set_to_a_missing_version_is_what_start_checks(
    sample_path, tmp_path, engine
):
    # The store's kernel volume says REAL_KERNEL; the property is then
    # changed, as qvm-prefs would: the start must use (and check) the
    # kernel the property names.
    root = lxml.etree.parse(str(sample_path)).getroot()
    _pools_in(root, tmp_path)
    sample_path.write_bytes(lxml.etree.tostring(root))
    _volumes_on_disk(sample_path)
    app = qubes.Qubes(str(sample_path), backend=engine)
    work = app.domains["work"]
    work.kernel = MISSING_KERNEL
    with pytest.raises(exc.QubesStorageError, match=MISSING_KERNEL):
        asyncio.run(work.start())
    assert engine.libvirt_domain(work) is None


def test_simulated_host_skips_the_kernel_check(kernel_store, simulated_host):
    # Chosen through QUBES_LIBVIRT_URI, as the tools do: a simulated host
    # describes volumes without checking them.
    app = qubes.Qubes(str(kernel_store))
    assert app.backend.capabilities.simulated is True
    work = app.domains["work"]
    asyncio.run(work.start())
    assert work.get_power_state() == "Running"
    root = lxml.etree.fromstring(app.backend.libvirt_domain(work).XMLDesc())
    assert MISSING_KERNEL in root.findtext("os/kernel")
