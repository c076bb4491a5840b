"""The domain XML of each backend, compared with golden files.

``tests/golden/BACKEND/CASE.xml`` holds what ``create_config`` gives for
one domain of the sample (or of a copy changed for the case). Files are
compared canonically (C14N, blank text between elements ignored), so
they are kept pretty-printed. ``pytest --regen-golden`` rewrites them
on purpose; read the diff before committing it.
"""

import difflib
import pathlib

import lxml.etree
import pytest

import qubes
import qubes.host
from qubes import exc
from qubes.backends import get_backend
from qubes.backends.lxc._xml import IDMAP_BASE, IDMAP_COUNT
from qubes.devices import DeviceAssignment

GOLDEN = pathlib.Path(__file__).parent / "golden"
_PARSER = lxml.etree.XMLParser(remove_blank_text=True)

DISPVM_UUID = "0b9a3c1e-6f0d-4a53-9f3e-2d6c1d7e5a01"
UEFI_UUID = "5d2f9e47-8c1b-4e6a-a0d3-7b4c9e2f1a10"


@pytest.fixture(autouse=True)
def _host_of_16_gib(monkeypatch):
    # maxmem defaults to half the host's memory at most: the golden files
    # must not depend on the machine that writes them.
    monkeypatch.setattr(qubes.host, "_read_memtotal", lambda: 16 * 1024**2)


# -- the backends, built on libvirt's test driver; nothing is opened -------

BACKENDS = {
    "xen": lambda: get_backend("xen", uri="test:///default"),
    "kvm": lambda: get_backend(
        "kvm", uri="test:///default", domain_type="qemu"
    ),
    "kvm-accel": lambda: get_backend(
        "kvm", uri="test:///default", domain_type="kvm"
    ),
    "lxc": lambda: get_backend("lxc", uri="test:///default"),
}


# -- the cases: each takes the loaded copy and returns the domain ----------


def _sample(name):
    def case(app):
        return app.domains[name]

    return case


def _dispvm(app):
    return app.add_new_vm(
        "DispVM",
        dispid=7,
        template="fedora-41-dvm",
        label="red",
        uuid=DISPVM_UUID,
    )


def _pci(app):
    work = app.domains["work"]
    work.devices["pci"].assign(DeviceAssignment(app.domains["dom0"], "00_14.0"))
    return work


def _feature(name, value):
    def case(app):
        work = app.domains["work"]
        work.features[name] = value
        return work

    return case


def _uefi(app):
    # A domain created without a kernel boots its own disk: hvm only.
    vm = app.add_new_vm(
        "AppVM",
        name="uefi-hvm",
        label="orange",
        virt_mode="hvm",
        kernel="",
        uuid=UEFI_UUID,
    )
    vm.features["uefi"] = "1"
    return vm


def _pv(app):
    work = app.domains["work"]
    work.virt_mode = "pv"
    return work


def _pv_pci(app):
    work = _pci(app)
    work.virt_mode = "pv"
    return work


def _no_netvm(app):
    work = app.domains["work"]
    work.netvm = None
    return work


CASES = {
    "work": _sample("work"),
    "sys-net": _sample("sys-net"),
    "fedora-41": _sample("fedora-41"),
    "fedora-41-dvm": _sample("fedora-41-dvm"),
    "dispvm": _dispvm,
    "pci": _pci,
    "memory-hotplug": _feature("memory-hotplug", "1"),
    "uefi": _uefi,
    "pv": _pv,
    "pv-pci": _pv_pci,
    "lxc-init": _feature("lxc.init", "/usr/lib/qubes/init-container"),
    "lxc-userns-off": _feature("lxc.userns", "0"),
    "no-netvm": _no_netvm,
}

SAMPLE_CASES = ["work", "sys-net", "fedora-41", "fedora-41-dvm"]
BUILT = [
    *[("xen", case) for case in SAMPLE_CASES],
    ("xen", "dispvm"),
    ("xen", "pci"),
    ("xen", "memory-hotplug"),
    ("xen", "uefi"),
    ("xen", "pv"),
    ("xen", "pv-pci"),
    ("xen", "no-netvm"),
    *[("kvm", case) for case in SAMPLE_CASES],
    ("kvm", "dispvm"),
    ("kvm", "pci"),
    ("kvm", "memory-hotplug"),
    ("kvm", "uefi"),
    ("kvm", "no-netvm"),
    ("kvm-accel", "work"),
    ("lxc", "work"),
    ("lxc", "fedora-41"),
    ("lxc", "fedora-41-dvm"),
    ("lxc", "dispvm"),
    ("lxc", "memory-hotplug"),
    ("lxc", "lxc-init"),
    ("lxc", "lxc-userns-off"),
    ("lxc", "no-netvm"),
]
REFUSED = [
    ("lxc", "sys-net"),
    ("lxc", "pci"),
    ("lxc", "uefi"),
    ("kvm", "pv"),
]


def _golden_path(backend, case):
    if backend == "kvm-accel":
        return GOLDEN / "kvm" / f"{case}-kvm.xml"
    return GOLDEN / backend / f"{case}.xml"


def _pretty(xml):
    root = lxml.etree.fromstring(xml.encode(), _PARSER)
    return lxml.etree.tostring(root, pretty_print=True, encoding="unicode")


def _canonical(xml):
    root = lxml.etree.fromstring(_pretty(xml).encode(), _PARSER)
    return lxml.etree.tostring(root, method="c14n")


def _config_of(sample_path, backend, case):
    app = qubes.Qubes(str(sample_path), backend=BACKENDS[backend]())
    vm = CASES[case](app)
    return app.backend.create_config(vm)


@pytest.mark.parametrize(
    ("backend", "case"), BUILT, ids=[f"{b}/{c}" for b, c in BUILT]
)
def test_domain_xml_matches_golden_file(
    sample_path, regen_golden, backend, case
):
    xml = _config_of(sample_path, backend, case)
    path = _golden_path(backend, case)
    if regen_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_pretty(xml))
        return
    if not path.exists():
        pytest.fail(
            f"no golden file {path}; write it with "
            "`pytest tests/test_xml_golden.py --regen-golden` and read it"
        )
    expected = path.read_text()
    if _canonical(xml) != _canonical(expected):
        diff = difflib.unified_diff(
            _pretty(expected).splitlines(),
            _pretty(xml).splitlines(),
            str(path),
            "create_config",
            lineterm="",
        )
        pytest.fail(
            "domain XML differs from its golden file:\n" + "\n".join(diff)
        )


@pytest.mark.parametrize(
    ("backend", "case"), REFUSED, ids=[f"{b}/{c}" for b, c in REFUSED]
)
def test_backend_refuses_what_it_cannot_run(sample_path, backend, case):
    with pytest.raises(exc.QubesUnsupportedError):
        _config_of(sample_path, backend, case)


# -- what the golden files must show, said once more in words --------------


def _parsed(sample_path, backend, case):
    return lxml.etree.fromstring(_config_of(sample_path, backend, case))


@pytest.mark.parametrize(("backend", "prefix"), [("xen", "xvd"), ("kvm", "vd")])
def test_disks_are_root_private_volatile_kernel_in_order(
    sample_path, backend, prefix
):
    root = _parsed(sample_path, backend, "work")
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == [
        prefix + letter for letter in "abcd"
    ]
    sources = [d.find("source").get("file") for d in disks]
    assert sources[0].endswith("/appvms/work/root.img")
    assert sources[1].endswith("/appvms/work/private.img")
    assert sources[2].endswith("/appvms/work/volatile.img")
    assert sources[3].endswith("/6.12.1-1.fc41/modules.img")


@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_only_the_kernel_disk_is_readonly(sample_path, backend):
    root = _parsed(sample_path, backend, "work")
    readonly = [
        d.find("source").get("file")
        for d in root.findall("devices/disk")
        if d.find("readonly") is not None
    ]
    assert readonly == ["/var/lib/qubes/vm-kernels/6.12.1-1.fc41/modules.img"]


def test_xen_vif_has_the_netvm_as_backend_domain(sample_path):
    interface = _parsed(sample_path, "xen", "work").find("devices/interface")
    assert interface.find("backenddomain").get("name") == "sys-net"
    assert interface.find("mac").get("address") == "00:16:3e:5e:00:03"
    assert interface.find("ip").get("address") == "10.137.0.3"


@pytest.mark.parametrize("backend", ["xen", "kvm", "lxc"])
def test_domain_without_netvm_has_no_interface(sample_path, backend):
    root = _parsed(sample_path, backend, "no-netvm")
    assert root.findall("devices/interface") == []


def test_kvm_cmdline_tells_the_guest_its_name(sample_path):
    cmdline = _parsed(sample_path, "kvm", "work").findtext("os/cmdline")
    assert "qubes.name=work" in cmdline.split()


def test_kvm_netvm_plugs_clients_into_its_own_network(sample_path):
    root = _parsed(sample_path, "kvm", "sys-net")
    networks = [
        i.find("source").get("network") for i in root.findall(".//interface")
    ]
    assert networks == ["default", "qubes-sys-net"]


@pytest.mark.parametrize(("name", "qid"), [("work", 3), ("fedora-41", 1)])
def test_lxc_idmap_gives_each_qid_its_own_range(sample_path, name, qid):
    root = _parsed(sample_path, "lxc", name)
    for kind in ("uid", "gid"):
        entry = root.find(f"idmap/{kind}")
        assert entry.get("start") == "0"
        assert int(entry.get("target")) == IDMAP_BASE + qid * IDMAP_COUNT
        assert entry.get("count") == str(IDMAP_COUNT)
    assert root.find("features/privnet") is not None


def test_lxc_userns_off_has_no_idmap(sample_path):
    root = _parsed(sample_path, "lxc", "lxc-userns-off")
    assert root.find("idmap") is None


def test_lxc_without_userns_or_netvm_still_has_its_own_network(sample_path):
    # No <interface> and no <privnet/>: libvirt would leave the container
    # in the host's network namespace, the opposite of "netvm none".
    app = qubes.Qubes(str(sample_path), backend=BACKENDS["lxc"]())
    work = app.domains["work"]
    work.netvm = None
    work.features["lxc.userns"] = "0"
    root = lxml.etree.fromstring(app.backend.create_config(work))
    assert root.find("devices/interface") is None
    assert root.find("features/privnet") is not None


def test_lxc_init_feature_is_the_container_init(sample_path):
    root = _parsed(sample_path, "lxc", "lxc-init")
    assert root.findtext("os/init") == "/usr/lib/qubes/init-container"


@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_pci_device_fixes_memory_and_is_a_hostdev(sample_path, backend):
    root = _parsed(sample_path, backend, "pci")
    address = root.find("devices/hostdev/source/address")
    assert (address.get("bus"), address.get("slot")) == ("0x00", "0x14")
    assert address.get("function") == "0x0"
    assert root.findtext("memory") == root.findtext("currentMemory")
    assert root.find("maxMemory") is None


def test_xen_pv_domain_with_pci_uses_the_host_memory_map(sample_path):
    root = _parsed(sample_path, "xen", "pv-pci")
    assert root.find("features/xen/e820_host").get("state") == "on"
    assert root.find("devices/hostdev") is not None


@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_memory_hotplug_declares_max_memory(sample_path, backend):
    root = _parsed(sample_path, backend, "memory-hotplug")
    max_memory = root.find("maxMemory")
    assert max_memory is not None
    assert max_memory.text == "4000"
    assert root.findtext("memory") == "400"


@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_domain_without_kernel_gets_no_kernel_modules_disk(
    sample_path, backend
):
    # kernel set to "" on a domain that had one: it boots its own disk,
    # so neither <kernel> nor the kernel pool's modules image is used.
    app = qubes.Qubes(str(sample_path), backend=BACKENDS[backend]())
    work = app.domains["work"]
    work.virt_mode = "hvm"
    work.kernel = ""
    root = lxml.etree.fromstring(app.backend.create_config(work))
    assert root.find("os/kernel") is None
    sources = [s.get("file") for s in root.findall("devices/disk/source")]
    assert not [s for s in sources if "vm-kernels" in s], sources


# -- the XML follows the model ---------------------------------------------


@pytest.mark.parametrize("backend", ["xen", "kvm"])
def test_changed_kernelopts_show_in_the_next_xml(sample_path, backend):
    app = qubes.Qubes(str(sample_path), backend=BACKENDS[backend]())
    work = app.domains["work"]
    app.backend.create_config(work)
    work.kernelopts = "quiet"
    root = lxml.etree.fromstring(app.backend.create_config(work))
    assert root.findtext("os/cmdline").endswith(" quiet")


def test_template_feature_change_shows_in_the_next_xml(sample_path):
    app = qubes.Qubes(str(sample_path), backend=BACKENDS["lxc"]())
    work = app.domains["work"]
    app.backend.create_config(work)
    app.domains["fedora-41"].features["lxc.init"] = "/bin/sh"
    root = lxml.etree.fromstring(app.backend.create_config(work))
    assert root.findtext("os/init") == "/bin/sh"


def test_netvm_change_shows_in_its_clients_xml(sample_path):
    app = qubes.Qubes(str(sample_path), backend=BACKENDS["xen"]())
    work = app.domains["work"]
    app.backend.create_config(work)
    work.netvm = None
    root = lxml.etree.fromstring(app.backend.create_config(work))
    assert root.find("devices/interface") is None


@pytest.mark.parametrize("backend", ["xen", "kvm", "lxc"])
def test_xml_does_not_depend_on_what_was_built_before(sample_path, backend):
    # Builders may share parts between domains: the order of the builds
    # must not show in any of them.
    cases = [case for name, case in BUILT if name == backend]

    def build_all(order):
        return {
            case: _canonical(_config_of(sample_path, backend, case))
            for case in order
        }

    assert build_all(cases) == build_all(reversed(cases))


# -- the schema check itself -----------------------------------------------


def test_schema_check_fails_on_an_unknown_element(validate_domain_xml):
    with pytest.raises(pytest.fail.Exception, match=r"domain\.rng"):
        validate_domain_xml(
            "<domain type='xen'><name>x</name><bogus/></domain>"
        )


def test_schema_check_accepts_a_minimal_domain(validate_domain_xml):
    validate_domain_xml(
        "<domain type='test'><name>x</name><memory>1024</memory>"
        "<os><type>hvm</type></os></domain>"
    )


def test_create_config_is_checked_against_the_schema(
    sample_path, monkeypatch, domain_schema
):
    backend = BACKENDS["xen"]()
    monkeypatch.setattr(
        type(backend),
        "build_xml",
        lambda self, spec: "<domain type='xen'><bogus/></domain>",
    )
    app = qubes.Qubes(str(sample_path), backend=backend)
    with pytest.raises(pytest.fail.Exception, match=r"domain\.rng"):
        app.backend.create_config(app.domains["work"])
