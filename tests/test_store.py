"""The store: loading the sample, the domains collection, removing
domains, saving safely, round trips and where the store lives."""

import errno
import fcntl
import os
import subprocess
import sys
import uuid

import lxml.etree
import pytest

import qubes
import qubes.store
from qubes import exc
from qubes.app import Qubes
from qubes.devices import DeviceAssignment
from qubes.storage.file import FilePool
from qubes.storage.kernels import LinuxKernelPool

# -- a canonical form of qubes.xml -------------------------------------------

#: children of these elements are compared as sets, keyed by an attribute
_SORT_BY = {
    "labels": "id",
    "pools": "name",
    "properties": "name",
    "domains": "id",
    "features": "name",
    "tags": "name",
    "volume-config": "name",
}


def _child_key(parent, child):
    if parent.tag == "devices":
        return (child.get("backend-domain", ""), child.get("id", ""))
    if parent.tag == "domain":
        return (child.tag, child.get("class", ""))
    attribute = _SORT_BY.get(parent.tag)
    if attribute is not None:
        return (child.get(attribute, ""),)
    return ()


def _canonical_element(element):
    children = [child for child in element if isinstance(child.tag, str)]
    if _SORT_BY.get(element.tag) or element.tag in ("devices", "domain"):
        children.sort(key=lambda child: _child_key(element, child))
    text = element.text or ""
    if children:
        text = text.strip()
    return (
        element.tag,
        tuple(sorted(element.attrib.items())),
        text,
        tuple(_canonical_element(child) for child in children),
    )


def canonical(document):
    """A comparable form of a qubes.xml document (bytes): domains sorted
    by id, properties, features, tags and volumes by name, attributes
    sorted, indentation ignored."""
    parser = lxml.etree.XMLParser(remove_blank_text=True)
    return _canonical_element(lxml.etree.fromstring(document, parser))


def test_canonical_form_ignores_order_and_indentation(sample_bytes):
    root = lxml.etree.fromstring(sample_bytes)
    domains = root.find("domains")
    domains[:] = list(reversed(domains))
    for properties in root.iter("properties"):
        properties[:] = list(reversed(properties))
    shuffled = lxml.etree.tostring(root)
    assert shuffled != sample_bytes
    assert canonical(shuffled) == canonical(sample_bytes)


def test_canonical_form_sees_a_changed_value(sample_bytes):
    changed = sample_bytes.replace(
        b'<property name="label">blue</property>',
        b'<property name="label">green</property>',
    )
    assert changed != sample_bytes
    assert canonical(changed) != canonical(sample_bytes)


def test_canonical_form_sees_a_changed_volume_attribute(sample_bytes):
    changed = sample_bytes.replace(
        b'vid="appvms/work/root" revisions_to_keep="0"',
        b'vid="appvms/work/root" revisions_to_keep="2"',
    )
    assert changed != sample_bytes
    assert canonical(changed) != canonical(sample_bytes)


# -- loading the sample ------------------------------------------------------


def test_sample_labels_are_loaded(app):
    assert sorted(label.name for label in app.labels.values()) == sorted(
        ["red", "orange", "yellow", "green", "gray", "blue", "purple", "black"]
    )


def test_sample_pools_are_loaded(app):
    assert list(app.pools) == ["varlibqubes", "linux-kernel"]
    files = app.pools["varlibqubes"]
    kernels = app.pools["linux-kernel"]
    assert isinstance(files, FilePool)
    assert isinstance(kernels, LinuxKernelPool)
    assert files.dir_path == "/var/lib/qubes"
    assert files.config["revisions_to_keep"] == "1"
    assert kernels.dir_path == "/var/lib/qubes/vm-kernels"


@pytest.mark.parametrize(
    ("prop", "domain"),
    [
        ("default_template", "fedora-41"),
        ("default_netvm", "sys-net"),
        ("default_dispvm", "fedora-41-dvm"),
        ("clockvm", "sys-net"),
        ("updatevm", "sys-net"),
    ],
)
def test_sample_global_domain_properties_are_loaded(app, prop, domain):
    assert getattr(app, prop) is app.domains[domain]


def test_sample_global_value_properties_are_loaded(app):
    assert app.default_kernel == "6.12.1-1.fc41"
    assert app.default_pool_kernel == "linux-kernel"
    assert app.default_pool == "varlibqubes"


def test_sample_unset_global_properties_read_as_defaults(app):
    assert app.property_is_default("management_dispvm")
    assert app.management_dispvm is None
    assert app.default_guivm is app.domains["dom0"]


def test_sample_domains_are_loaded_in_file_order(app):
    assert [(vm.qid, vm.name, vm.klass) for vm in app.domains] == [
        (0, "dom0", "AdminVM"),
        (1, "fedora-41", "TemplateVM"),
        (4, "fedora-41-dvm", "AppVM"),
        (2, "sys-net", "AppVM"),
        (3, "work", "AppVM"),
    ]


def test_store_path_is_absolute(sample_path, monkeypatch):
    monkeypatch.chdir(sample_path.parent)
    assert Qubes("qubes.xml").path == str(sample_path)


# -- the domains collection --------------------------------------------------

WORK_UUID = "388d0cf6-0449-46ec-b90d-c0b13cd9dd98"


@pytest.mark.parametrize(
    "key",
    ["work", 3, uuid.UUID(WORK_UUID), WORK_UUID, WORK_UUID.upper()],
    ids=["name", "qid", "uuid", "uuid-string", "uuid-upper"],
)
def test_domain_lookup(app, key):
    work = app.domains["work"]
    assert app.domains[key] is work
    assert key in app.domains
    assert app.domains.get(key) is work


def test_domain_lookup_by_object(app):
    work = app.domains["work"]
    assert app.domains[work] is work
    assert work in app.domains


def test_domain_of_another_store_is_not_found(app, sample_path):
    other = Qubes(str(sample_path)).domains["work"]
    assert other not in app.domains
    with pytest.raises(exc.QubesVMNotFoundError):
        app.domains[other]


@pytest.mark.parametrize(
    "key", ["nope", 99, uuid.uuid4(), str(uuid.uuid4()), True, None, 3.0]
)
def test_missing_domain_is_a_named_key_error(app, key):
    assert key not in app.domains
    assert app.domains.get(key, "none") == "none"
    with pytest.raises(exc.QubesVMNotFoundError) as info:
        app.domains[key]
    assert isinstance(info.value, KeyError)


def test_len_and_iteration(app):
    assert len(app.domains) == 5
    assert {vm.name for vm in app.domains} == {
        "dom0",
        "fedora-41",
        "fedora-41-dvm",
        "sys-net",
        "work",
    }
    assert app.domains.keys() == [0, 1, 4, 2, 3]


def test_new_domain_gets_the_lowest_free_qid(app):
    assert app.domains.get_new_unused_qid() == 5
    assert app.add_new_vm("AppVM", name="fresh", label="red").qid == 5


def test_qid_freed_by_a_removal_is_reused(app):
    del app.domains["work"]
    assert app.domains.get_new_unused_qid() == 3
    assert app.add_new_vm("AppVM", name="fresh", label="red").qid == 3


def test_duplicate_qid_is_refused(app):
    with pytest.raises(exc.QubesDuplicateError):
        app.add_new_vm("AppVM", qid=3, name="fresh", label="red")
    assert "fresh" not in app.domains


# -- removing domains --------------------------------------------------------


def test_removed_domain_is_gone_from_every_index(app):
    work = app.domains["work"]
    seen = []
    app.add_handler("domain-delete", lambda a, e, **kw: seen.append(kw["vm"]))
    del app.domains["work"]
    assert len(app.domains) == 4
    for key in ("work", 3, work.uuid, work):
        assert key not in app.domains
    assert seen == [work]


def test_removal_is_saved(app, sample_path):
    del app.domains["work"]
    app.save()
    assert "work" not in Qubes(str(sample_path)).domains


def _refer_by_template(app):
    app.add_new_vm("TemplateVM", name="debian-12", label="black")
    app.add_new_vm("AppVM", name="deb", label="red", template="debian-12")
    return "debian-12", "deb.template"


def _refer_by_netvm(app):
    app.add_new_vm(
        "AppVM", name="sys-firewall", label="green", provides_network=True
    )
    app.domains["work"].netvm = "sys-firewall"
    return "sys-firewall", "work.netvm"


def _refer_by_default_dispvm(app):
    app.add_new_vm("AppVM", name="dvm2", label="red", template_for_dispvms=True)
    app.domains["work"].default_dispvm = "dvm2"
    return "dvm2", "work.default_dispvm"


def _refer_by_device(app):
    usb = app.add_new_vm("AppVM", name="sys-usb", label="red")
    app.domains["work"].devices["usb"].assign(DeviceAssignment(usb, "2-1"))
    return "sys-usb", "work.usb device 2-1"


def _refer_by_global(app):
    app.clockvm = app.add_new_vm("AppVM", name="sys-clock", label="red")
    return "sys-clock", "global clockvm"


def _refer_by_sample(app):
    return "fedora-41", "global default_template"


@pytest.mark.parametrize(
    "refer",
    [
        _refer_by_template,
        _refer_by_netvm,
        _refer_by_default_dispvm,
        _refer_by_device,
        _refer_by_global,
        _refer_by_sample,
    ],
    ids=["template", "netvm", "default_dispvm", "device", "global", "sample"],
)
def test_removing_a_domain_in_use_is_refused(app, sample_path, refer):
    name, referrer = refer(app)
    app.save()
    saved = sample_path.read_bytes()
    target = app.domains[name]
    count = len(app.domains)
    with pytest.raises(exc.QubesVMInUseError) as info:
        del app.domains[name]
    assert referrer in str(info.value)
    assert name in str(info.value)
    assert len(app.domains) == count
    for key in (name, target.qid, target.uuid):
        assert app.domains[key] is target
    app.save()
    assert sample_path.read_bytes() == saved


# -- saving ------------------------------------------------------------------


def test_save_without_changes_is_byte_identical(app, sample_path, sample_bytes):
    app.save()
    assert sample_path.read_bytes() == sample_bytes


def test_save_without_changes_is_canonically_identical(
    app, sample_path, sample_bytes
):
    app.save()
    assert canonical(sample_path.read_bytes()) == canonical(sample_bytes)


def test_changes_survive_a_save_and_a_fresh_load(app, sample_path):
    work = app.domains["work"]
    work.memory = 512
    work.netvm = None
    work.features["service.cups"] = True
    work.tags.add("project-x")
    work.devices["pci"].assign(
        DeviceAssignment(
            app.domains["dom0"], "00_1f.6", options={"permissive": "True"}
        )
    )
    app.default_kernel = "6.6.2-1.fc41"
    app.save()

    again = Qubes(str(sample_path)).domains["work"]
    assert again.memory == 512
    assert again.netvm is None
    assert not again.property_is_default("netvm")
    assert again.features["service.cups"] == "1"
    assert "project-x" in again.tags
    (device,) = again.devices["pci"]
    assert device.backend_domain is again.app.domains["dom0"]
    assert (device.ident, device.options) == ("00_1f.6", {"permissive": "True"})
    assert again.app.default_kernel == "6.6.2-1.fc41"


def test_second_save_of_a_changed_store_is_byte_identical(app, sample_path):
    app.domains["work"].tags.add("project-x")
    app.add_new_vm("StandaloneVM", name="alone", label="green")
    app.save()
    first = sample_path.read_bytes()
    Qubes(str(sample_path)).save()
    assert sample_path.read_bytes() == first


def test_new_domains_of_every_class_round_trip(app, sample_path):
    app.add_new_vm("TemplateVM", name="debian-12", label="black")
    app.add_new_vm("StandaloneVM", name="alone", label="green")
    app.add_new_vm("DispVM", dispid=42, label="red")
    app.save()
    again = Qubes(str(sample_path))
    assert again.domains["debian-12"].klass == "TemplateVM"
    assert again.domains["alone"].klass == "StandaloneVM"
    disp = again.domains["disp42"]
    assert (disp.klass, disp.dispid) == ("DispVM", 42)
    assert disp.template is again.domains["fedora-41-dvm"]


STORE_FILES = ["qubes.xml", "qubes.xml.lock"]


def test_failure_while_writing_leaves_the_old_file(
    app, sample_path, sample_bytes, monkeypatch
):
    app.domains["sys-net"].memory = 999

    def broken():
        raise RuntimeError("disk on fire")

    # work is the last domain: the others are written before it fails.
    monkeypatch.setattr(app.domains["work"], "__xml__", broken)
    with pytest.raises((RuntimeError, exc.QubesStoreError)):
        app.save()
    assert sample_path.read_bytes() == sample_bytes
    assert sorted(os.listdir(sample_path.parent)) == STORE_FILES


def test_failed_rename_leaves_the_old_file(
    app, sample_path, sample_bytes, monkeypatch
):
    app.domains["work"].memory = 999

    def no_space(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(qubes.store.os, "replace", no_space)
    with pytest.raises(exc.QubesStoreError) as info:
        app.save()
    assert str(sample_path) in str(info.value)
    assert sample_path.read_bytes() == sample_bytes
    assert sorted(os.listdir(sample_path.parent)) == STORE_FILES


_KILLED_WRITER = """
import os, sys, time
import qubes.store
from qubes.app import Qubes

app = Qubes(sys.argv[1])
app.domains["work"].memory = 999
def hang(src, dst):
    print("written", flush=True)
    time.sleep(600)
qubes.store.os.replace = hang
app.save()
"""


def test_temporary_file_of_a_killed_writer_goes_at_the_next_save(
    app, sample_path, sample_bytes
):
    other = sample_path.parent / ".other.xml.abcdefgh.tmp"
    other.write_bytes(b"another store's")
    writer = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(sample_path)],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout.readline() == b"written\n"
    finally:
        writer.kill()
        writer.wait()
    left = sorted(set(os.listdir(sample_path.parent)) - set(STORE_FILES))
    assert len(left) == 2 and left[1].startswith(".qubes.xml.")
    assert sample_path.read_bytes() == sample_bytes
    app.domains["work"].memory = 500
    app.save()
    assert sorted(os.listdir(sample_path.parent)) == sorted(
        [*STORE_FILES, other.name]
    )
    assert Qubes(str(sample_path)).domains["work"].memory == 500


def test_save_works_again_after_a_failed_save(app, sample_path, monkeypatch):
    app.domains["work"].memory = 999

    def io_error(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(qubes.store.os, "replace", io_error)
        with pytest.raises(exc.QubesStoreError):
            app.save()
    app.save()
    assert Qubes(str(sample_path)).domains["work"].memory == 999


def test_save_holds_the_lock_while_it_replaces_the_file(
    app, sample_path, monkeypatch
):
    lock_path = str(sample_path) + ".lock"
    real_replace = os.replace
    held = []

    def replace(src, dst):
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(True)
        else:
            held.append(False)
        finally:
            os.close(fd)
        real_replace(src, dst)

    monkeypatch.setattr(qubes.store.os, "replace", replace)
    app.save()
    assert held == [True]


def test_save_releases_the_lock(app, sample_path):
    app.save()
    fd = os.open(str(sample_path) + ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def test_save_keeps_the_file_mode(app, sample_path):
    sample_path.chmod(0o640)
    app.save()
    assert sample_path.stat().st_mode & 0o7777 == 0o640


def test_concurrent_writer_is_detected_not_overwritten(sample_path):
    first = Qubes(str(sample_path))
    second = Qubes(str(sample_path))
    first.domains["work"].memory = 777
    first.save()
    after_first = sample_path.read_bytes()

    second.domains["sys-net"].memory = 888
    with pytest.raises(exc.QubesConcurrentWriteError) as info:
        second.save()
    assert str(sample_path) in str(info.value)
    assert sample_path.read_bytes() == after_first
    reloaded = Qubes(str(sample_path))
    assert reloaded.domains["work"].memory == 777
    assert reloaded.domains["sys-net"].memory == 425


def test_change_in_place_by_another_program_is_detected(app, sample_path):
    edited = sample_path.read_bytes() + b"<!-- edited by hand -->\n"
    with open(sample_path, "r+b") as file:
        file.write(edited)
    with pytest.raises(exc.QubesConcurrentWriteError):
        app.save()
    assert sample_path.read_bytes() == edited


def test_writer_may_save_again_after_its_own_save(app, sample_path):
    app.domains["work"].memory = 500
    app.save()
    app.domains["work"].memory = 600
    app.save()
    assert Qubes(str(sample_path)).domains["work"].memory == 600


def test_fresh_load_after_another_save_may_save(sample_path):
    Qubes(str(sample_path)).save()
    late = Qubes(str(sample_path))
    late.domains["work"].memory = 640
    late.save()
    assert Qubes(str(sample_path)).domains["work"].memory == 640


# -- where the store lives ---------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("QUBES_XML_PATH", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return monkeypatch


def test_default_path_for_root(clean_env):
    clean_env.setattr(os, "geteuid", lambda: 0)
    assert qubes.store.default_store_path() == "/var/lib/qubes/qubes.xml"


def test_default_path_for_a_user_follows_xdg_data_home(clean_env, tmp_path):
    clean_env.setattr(os, "geteuid", lambda: 1000)
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert qubes.store.default_store_path() == str(
        tmp_path / "data" / "qubes" / "qubes.xml"
    )


def test_default_path_for_a_user_without_xdg_data_home(clean_env, tmp_path):
    clean_env.setattr(os, "geteuid", lambda: 1000)
    clean_env.setenv("HOME", str(tmp_path))
    assert qubes.store.default_store_path() == str(
        tmp_path / ".local" / "share" / "qubes" / "qubes.xml"
    )


@pytest.mark.parametrize("euid", [0, 1000])
def test_qubes_xml_path_overrides_the_default(clean_env, tmp_path, euid):
    clean_env.setattr(os, "geteuid", lambda: euid)
    clean_env.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    clean_env.setenv("QUBES_XML_PATH", str(tmp_path / "mine.xml"))
    assert qubes.store.default_store_path() == str(tmp_path / "mine.xml")


def test_store_without_a_path_uses_the_default(clean_env, sample_path):
    clean_env.setenv("QUBES_XML_PATH", str(sample_path))
    app = Qubes()
    assert app.path == str(sample_path)
    assert "work" in app.domains


# -- a new store -------------------------------------------------------------


def test_create_empty_store_makes_a_loadable_store(tmp_path):
    path = tmp_path / "new" / "qubes.xml"
    created = Qubes.create_empty_store(str(path))
    assert created.path == str(path)
    app = Qubes(str(path))
    assert [(vm.qid, vm.name, vm.klass) for vm in app.domains] == [
        (0, "dom0", "AdminVM")
    ]
    assert len(app.labels) == 8
    assert sorted(app.pools) == ["linux-kernel", "varlibqubes"]


def test_create_empty_store_refuses_an_existing_file(sample_path, sample_bytes):
    with pytest.raises(exc.QubesStoreError) as info:
        Qubes.create_empty_store(str(sample_path))
    assert str(sample_path) in str(info.value)
    assert sample_path.read_bytes() == sample_bytes


def test_new_store_takes_domains(tmp_path):
    path = tmp_path / "qubes.xml"
    app = Qubes.create_empty_store(str(path))
    app.add_new_vm("TemplateVM", name="debian-12", label="black")
    app.add_new_vm("AppVM", name="work", label="blue", template="debian-12")
    app.save()
    again = Qubes(str(path))
    assert again.domains["work"].template is again.domains["debian-12"]
