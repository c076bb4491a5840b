"""Domains: BaseVM's attributes, the domain classes, the network role,
the reference defaults, features, tags, labels, devices and volumes."""

import asyncio
import logging
import uuid

import pytest

import qubes
from qubes import exc
from qubes.devices import DeviceAssignment, DeviceCollection, DeviceManager
from qubes.events import handler
from qubes.features import Features
from qubes.label import STANDARD_LABELS, Label
from qubes.storage import Storage, Volume
from qubes.storage.kernels import KernelVolume
from qubes.tags import Tags
from qubes.vm.adminvm import DOM0_UUID, AdminVM
from qubes.vm.appvm import AppVM
from qubes.vm.dispvm import DispVM
from qubes.vm.standalonevm import StandaloneVM
from qubes.vm.templatevm import TemplateVM


def new_dispvm(app, dispid, **kwargs):
    kwargs.setdefault("label", "red")
    return app.add_new_vm("DispVM", dispid=dispid, **kwargs)


def new_netvm(app, name="sys-firewall"):
    return app.add_new_vm(
        "AppVM", name=name, label="green", provides_network=True
    )


def pci(backend, ident="00_14.0", **options):
    return DeviceAssignment(backend, ident, options=options)


# -- BaseVM ------------------------------------------------------------------


def test_domain_knows_its_store(app):
    assert app.domains["work"].app is app


def test_loaded_domain_has_name_qid_uuid_and_label(app):
    work = app.domains["work"]
    assert work.name == "work"
    assert work.qid == 3
    assert work.uuid == uuid.UUID("388d0cf6-0449-46ec-b90d-c0b13cd9dd98")
    assert isinstance(work.uuid, uuid.UUID)
    assert work.label is app.get_label("blue")


def test_new_domain_gets_a_random_uuid(app):
    first = app.add_new_vm("AppVM", name="one", label="red")
    second = app.add_new_vm("AppVM", name="two", label="red")
    assert isinstance(first.uuid, uuid.UUID)
    assert first.uuid.version == 4
    assert first.uuid != second.uuid


def test_loaded_domain_without_uuid_gets_one(sample_path):
    text = sample_path.read_text().replace(
        '<property name="uuid">388d0cf6-0449-46ec-b90d-c0b13cd9dd98</property>',
        "",
    )
    sample_path.write_text(text)
    app = qubes.Qubes(str(sample_path))
    work = app.domains["work"]
    assert isinstance(work.uuid, uuid.UUID)
    assert app.domains[work.uuid] is work


def test_uuid_given_as_a_string_is_a_uuid(app):
    value = "0b1a2b3c-4d5e-4f60-8a7b-8c9d0e1f2a3b"
    vm = app.add_new_vm("AppVM", name="given", label="red", uuid=value)
    assert vm.uuid == uuid.UUID(value)


@pytest.mark.parametrize(
    ("name", "klass"),
    [
        ("dom0", "AdminVM"),
        ("fedora-41", "TemplateVM"),
        ("work", "AppVM"),
    ],
)
def test_klass_is_the_class_name_of_the_file(app, name, klass):
    assert app.domains[name].klass == klass


def test_domain_carries_its_collections(app):
    work = app.domains["work"]
    assert isinstance(work.features, Features)
    assert isinstance(work.tags, Tags)
    assert isinstance(work.devices, DeviceManager)
    assert isinstance(work.storage, Storage)
    assert set(work.volumes) == {"root", "private", "volatile", "kernel"}


def test_xml_is_the_domain_element(app):
    element = app.domains["work"].xml
    assert element.tag == "domain"
    assert element.get("id") == "domain-3"
    assert element.get("class") == "AppVM"


def test_log_is_named_after_the_domain(app):
    log = app.domains["work"].log
    assert isinstance(log, logging.Logger)
    assert log.name == "vm.work"


def test_new_domain_fires_domain_init_only(app, recording_appvm):
    app.add_new_vm("AppVM", name="fresh", label="red")
    events = [e for n, e in recording_appvm.seen if n == "fresh"]
    assert events == ["domain-init"]


def test_loaded_domain_fires_domain_load(sample_path, recording_appvm):
    qubes.Qubes(str(sample_path))
    events = [e for n, e in recording_appvm.seen if n == "work"]
    assert "domain-load" in events
    assert "domain-init" in events


def test_domain_load_handler_sees_resolved_references(
    sample_path, install_appvm_class
):
    found = {}

    class LoadWatcher(AppVM):
        @handler("domain-load")
        def _loaded(self, event, **kwargs):
            found[self.name] = (self.template, self.netvm)

    install_appvm_class(LoadWatcher)
    app = qubes.Qubes(str(sample_path))
    domains = app.domains
    assert found["work"] == (domains["fedora-41"], domains["sys-net"])


# -- AdminVM -----------------------------------------------------------------


def test_dom0_is_the_admin_vm(app):
    dom0 = app.domains[0]
    assert isinstance(dom0, AdminVM)
    assert dom0.name == "dom0"
    assert dom0.qid == 0
    assert dom0.uuid == DOM0_UUID == uuid.UUID(int=0)


def test_dom0_is_found_by_the_zero_uuid(app):
    assert app.domains[uuid.UUID(int=0)] is app.domains["dom0"]


@pytest.mark.parametrize(
    ("prop", "value"),
    [("name", "admin"), ("qid", 7), ("uuid", str(uuid.uuid4()))],
)
def test_dom0_identity_is_fixed(app, prop, value):
    dom0 = app.domains["dom0"]
    with pytest.raises(exc.QubesPropertyValueError):
        setattr(dom0, prop, value)
    assert dom0.name == "dom0"
    assert dom0.qid == 0
    assert dom0.uuid == DOM0_UUID


def test_dom0_cannot_be_removed(app):
    with pytest.raises(exc.QubesVMInUseError):
        del app.domains["dom0"]
    assert "dom0" in app.domains


# -- AppVM and TemplateVM ----------------------------------------------------


def test_appvm_is_based_on_its_template(app):
    work = app.domains["work"]
    template = app.domains["fedora-41"]
    assert isinstance(work, AppVM)
    assert isinstance(template, TemplateVM)
    assert work.template is template
    assert work in template.appvms


def test_new_appvm_gets_the_default_template_as_its_own(app):
    vm = app.add_new_vm("AppVM", name="fresh", label="red")
    assert vm.template is app.default_template
    # Its own from now on: a later change of the global default does not
    # move it away from the template its volumes were made from.
    assert not vm.property_is_default("template")


def test_changing_the_template_moves_the_root_source(app):
    app.add_new_vm("TemplateVM", name="tpl2", label="black")
    work = app.domains["work"]
    work.template = "tpl2"
    assert work.volume_config["root"]["source"] == "vm-templates/tpl2/root"
    assert work.volumes["root"].source == "vm-templates/tpl2/root"


@pytest.mark.parametrize("other", ["sys-net", "dom0"])
def test_appvm_refuses_a_non_template_as_template(app, other):
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyValueError) as info:
        work.template = other
    assert info.value.prop == "template"
    assert work.template is app.domains["fedora-41"]


def test_new_appvm_refuses_a_non_template(app):
    with pytest.raises(exc.QubesPropertyValueError):
        app.add_new_vm("AppVM", name="bad", label="red", template="work")
    assert "bad" not in app.domains


def test_appvm_without_any_template_is_refused(app):
    app.default_template = None
    with pytest.raises(exc.QubesPropertyAccessError) as info:
        app.add_new_vm("AppVM", name="orphan", label="red")
    assert info.value.prop == "template"
    assert "orphan" not in app.domains


def test_standalone_vm_has_no_template(app):
    vm = app.add_new_vm("StandaloneVM", name="alone", label="green")
    assert isinstance(vm, StandaloneVM)
    assert getattr(vm, "template", None) is None
    assert vm.volume_config["root"]["save_on_stop"] == "True"
    assert "source" not in vm.volume_config["root"]


def test_template_has_no_netvm_by_default(app):
    assert app.domains["fedora-41"].netvm is None


# -- DispVM ------------------------------------------------------------------


def test_dispvm_is_named_after_its_dispid(app):
    vm = new_dispvm(app, 12, template="fedora-41-dvm")
    assert isinstance(vm, DispVM)
    assert vm.name == "disp12"
    assert app.domains["disp12"] is vm


def test_dispvm_template_defaults_to_default_dispvm(app):
    vm = new_dispvm(app, 13)
    assert vm.template is app.domains["fedora-41-dvm"]


def test_dispvm_auto_cleanup_is_off_by_default(app):
    assert new_dispvm(app, 14).auto_cleanup is False


@pytest.mark.parametrize(
    ("dispid", "ip"),
    [(1, "10.138.0.1"), (300, "10.138.1.44"), (65535, "10.138.255.255")],
)
def test_dispvm_address_comes_from_its_dispid(app, dispid, ip):
    vm = new_dispvm(app, dispid)
    assert vm.ip == ip
    assert vm.qid == 5


def test_dispvm_refuses_an_appvm_that_is_not_a_disposable_template(app):
    with pytest.raises(exc.QubesPropertyValueError, match="disposable"):
        new_dispvm(app, 15, template="work")
    assert "disp15" not in app.domains


def test_dispvm_refuses_a_template_vm(app):
    with pytest.raises(exc.QubesPropertyValueError):
        new_dispvm(app, 16, template="fedora-41")
    assert "disp16" not in app.domains


def test_dispid_is_write_once(app):
    vm = new_dispvm(app, 17)
    with pytest.raises(exc.QubesPropertyAccessError):
        vm.dispid = 18
    assert vm.dispid == 17


def test_dispvm_volumes_are_snapshots_of_the_disposable_template(app):
    vm = new_dispvm(app, 19)
    config = vm.volume_config
    assert config["root"]["source"] == "vm-templates/fedora-41/root"
    assert config["private"]["source"] == "appvms/fedora-41-dvm/private"
    assert config["private"]["snap_on_start"] == "True"
    assert config["private"]["save_on_stop"] == "False"


def test_disposable_template_lists_its_dispvms(app):
    vm = new_dispvm(app, 20)
    assert app.domains["fedora-41-dvm"].dispvms == [vm]


def test_disposable_template_role_stays_while_dispvms_use_it(app):
    new_dispvm(app, 21)
    dvm = app.domains["fedora-41-dvm"]
    with pytest.raises(exc.QubesPropertyValueError):
        dvm.template_for_dispvms = False
    assert dvm.template_for_dispvms is True


# -- the network role --------------------------------------------------------


def test_netvm_defaults_to_the_global_default_netvm(app):
    work = app.domains["work"]
    assert work.property_is_default("netvm")
    assert work.netvm is app.default_netvm
    firewall = new_netvm(app)
    app.default_netvm = firewall
    assert work.netvm is firewall


def test_netvm_explicitly_empty_means_no_network(app):
    sys_net = app.domains["sys-net"]
    assert not sys_net.property_is_default("netvm")
    assert sys_net.netvm is None


def test_netvm_must_provide_network(app):
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyValueError, match="network") as info:
        work.netvm = "fedora-41-dvm"
    assert info.value.prop == "netvm"
    assert work.property_is_default("netvm")


def test_domain_cannot_be_its_own_netvm(app):
    sys_net = app.domains["sys-net"]
    with pytest.raises(exc.QubesPropertyValueError):
        sys_net.netvm = sys_net
    assert sys_net.netvm is None


def test_netvm_loop_is_refused_at_runtime(app):
    sys_net = app.domains["sys-net"]
    firewall = new_netvm(app)
    firewall.netvm = sys_net
    with pytest.raises(exc.QubesPropertyValueError, match="loop"):
        sys_net.netvm = firewall
    assert sys_net.netvm is None


def test_longer_netvm_loop_is_refused_at_runtime(app):
    sys_net = app.domains["sys-net"]
    first = new_netvm(app, "net-a")
    second = new_netvm(app, "net-b")
    first.netvm = sys_net
    second.netvm = first
    with pytest.raises(exc.QubesPropertyValueError, match="loop"):
        sys_net.netvm = second
    assert sys_net.netvm is None


def test_provides_network_stays_while_domains_use_it(app):
    sys_net = app.domains["sys-net"]
    with pytest.raises(exc.QubesPropertyValueError):
        sys_net.provides_network = False
    assert sys_net.provides_network is True


def test_connected_vms_lists_the_users_of_a_netvm(app):
    names = {vm.name for vm in app.domains["sys-net"].connected_vms}
    assert names == {"work", "fedora-41-dvm"}


@pytest.mark.parametrize(
    ("qid", "ip"),
    [(5, "10.137.0.5"), (255, "10.137.0.255"), (300, "10.137.1.44")],
)
def test_ip_comes_from_the_qid(app, qid, ip):
    vm = app.add_new_vm("AppVM", qid=qid, name="numbered", label="red")
    assert vm.ip == ip


def test_ip_can_be_set_and_is_validated(app):
    work = app.domains["work"]
    work.ip = "10.137.9.9"
    assert work.ip == "10.137.9.9"
    with pytest.raises(exc.QubesPropertyValueError):
        work.ip = "10.137.9"
    assert work.ip == "10.137.9.9"


def test_domain_without_network_has_no_address(app):
    template = app.domains["fedora-41"]
    assert template.ip is None
    assert template.netmask is None
    assert template.dns is None
    assert template.visible_gateway is None


def test_gateway_of_a_client_is_its_netvm_address(app):
    work = app.domains["work"]
    sys_net = app.domains["sys-net"]
    assert work.visible_gateway == sys_net.ip == "10.137.0.2"
    assert work.gateway is None


def test_network_provider_offers_its_own_address_as_gateway(app):
    sys_net = app.domains["sys-net"]
    assert sys_net.gateway == "10.137.0.2"
    assert sys_net.visible_gateway is None


def test_netmask_and_dns_of_a_networked_domain(app):
    work = app.domains["work"]
    assert work.netmask == "255.255.255.255"
    assert work.dns == ("10.139.1.1", "10.139.1.2")


def test_mac_is_unique_per_domain_and_well_formed(app):
    macs = [vm.mac for vm in app.domains if hasattr(vm, "mac")]
    assert len(set(macs)) == len(macs)
    assert app.domains["work"].mac == "00:16:3e:5e:00:03"


def test_mac_is_validated(app):
    work = app.domains["work"]
    work.mac = "00:16:3E:AA:BB:CC"
    assert work.mac == "00:16:3e:aa:bb:cc"
    with pytest.raises(exc.QubesPropertyValueError):
        work.mac = "00:16:3e"


# -- reference defaults ------------------------------------------------------


def test_memory_and_vcpus_defaults(app):
    template = app.domains["fedora-41"]
    assert template.memory == 400
    assert template.vcpus == 2


def test_appvm_follows_the_template_memory_until_set(app):
    template = app.domains["fedora-41"]
    work = app.domains["work"]
    template.memory = 1000
    assert work.memory == 1000
    work.memory = 300
    assert work.memory == 300
    assert template.memory == 1000
    del work.memory
    assert work.memory == 1000


def test_appvm_follows_the_template_vcpus(app):
    app.domains["fedora-41"].vcpus = 4
    assert app.domains["work"].vcpus == 4


@pytest.mark.parametrize("value", [0, -1, "lots"])
def test_memory_must_be_a_positive_number(app, value):
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyValueError):
        work.memory = value
    assert work.memory == 400


def test_maxmem_is_zero_with_a_pci_device(app):
    work = app.domains["work"]
    assert work.maxmem > 0
    work.devices["pci"].assign(pci(app.domains["dom0"]))
    assert work.maxmem == 0


def test_virt_mode_is_pvh_by_default(app):
    assert app.domains["fedora-41"].virt_mode == "pvh"
    assert app.domains["work"].virt_mode == "pvh"


def test_virt_mode_is_hvm_with_a_pci_device(app):
    work = app.domains["work"]
    work.devices["pci"].assign(pci(app.domains["dom0"]))
    assert work.virt_mode == "hvm"


@pytest.mark.parametrize("mode", ["pv", "PVH", "hvm"])
def test_virt_mode_accepts_the_xen_modes(app, mode):
    work = app.domains["work"]
    work.virt_mode = mode
    assert work.virt_mode == mode.lower()


def test_virt_mode_refuses_other_modes(app):
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyValueError):
        work.virt_mode = "container"
    assert work.virt_mode == "pvh"


def test_kernel_comes_from_the_default_kernel(app):
    assert app.domains["fedora-41"].kernel == "6.12.1-1.fc41"
    assert app.domains["work"].kernel == "6.12.1-1.fc41"
    app.default_kernel = "6.6.2-1.fc41"
    assert app.domains["work"].kernel == "6.6.2-1.fc41"


def test_appvm_follows_the_template_kernel(app):
    app.domains["fedora-41"].kernel = "5.15.0"
    assert app.domains["work"].kernel == "5.15.0"


def test_empty_kernel_means_none(app):
    work = app.domains["work"]
    work.kernel = ""
    assert work.kernel is None


@pytest.mark.parametrize("value", ["../../etc", "6.1/vmlinuz", " 6.1"])
def test_kernel_version_with_path_parts_is_refused(app, value):
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyValueError):
        work.kernel = value
    assert work.kernel == "6.12.1-1.fc41"


def test_kernelopts_default_and_with_pci(app):
    work = app.domains["work"]
    plain = work.kernelopts
    assert plain
    work.devices["pci"].assign(pci(app.domains["dom0"]))
    assert work.kernelopts != plain
    assert "iommu=soft" in work.kernelopts


def test_appvm_follows_the_template_kernelopts(app):
    app.domains["fedora-41"].kernelopts = "nopat"
    assert app.domains["work"].kernelopts == "nopat"


# -- features ----------------------------------------------------------------


def test_features_are_loaded(app):
    features = app.domains["fedora-41"].features
    assert dict(features) == {"qrexec": "1", "os": "Linux"}


@pytest.mark.parametrize(
    ("value", "stored"),
    [(True, "1"), (False, ""), ("yes", "yes"), (5, "5")],
)
def test_feature_values_are_strings(app, value, stored):
    features = app.domains["work"].features
    features["thing"] = value
    assert features["thing"] == stored


def test_missing_feature_is_a_named_key_error(app):
    with pytest.raises(exc.QubesFeatureNotFoundError) as info:
        app.domains["work"].features["nope"]
    assert isinstance(info.value, KeyError)


def test_check_with_template_walks_the_template(app):
    work = app.domains["work"]
    assert "os" not in work.features
    assert work.features.check_with_template("os") == "Linux"


def test_check_with_template_prefers_the_domain_value(app):
    work = app.domains["work"]
    work.features["os"] = "Windows"
    assert work.features.check_with_template("os") == "Windows"


def test_check_with_template_walks_the_whole_chain(app):
    vm = new_dispvm(app, 30)
    assert vm.features.check_with_template("qrexec") == "1"


def test_check_with_template_default_and_error(app):
    features = app.domains["work"].features
    assert features.check_with_template("nope", None) is None
    with pytest.raises(exc.QubesFeatureNotFoundError):
        features.check_with_template("nope")


def test_many_with_template_finds_as_check_with_template_does(app):
    vm = new_dispvm(app, 30)
    vm.features["os"] = "Windows"
    names = ("qrexec", "os", "nope", "gui")
    expected = tuple(
        (name, vm.features.check_with_template(name))
        for name in names
        if vm.features.check_with_template(name, None) is not None
    )
    assert vm.features.many_with_template(names) == expected
    assert ("os", "Windows") in expected and ("qrexec", "1") in expected


def test_feature_set_and_delete_fire_events(app):
    work = app.domains["work"]
    seen = []

    def record(vm, event, **kwargs):
        seen.append(event)

    work.add_handler("domain-feature-set:*", record)
    work.add_handler("domain-feature-delete:*", record)
    work.features["gui"] = True
    del work.features["gui"]
    assert seen == ["domain-feature-set:gui", "domain-feature-delete:gui"]


def test_feature_pre_set_handler_can_veto(app):
    work = app.domains["work"]

    def veto(vm, event, **kwargs):
        raise exc.QubesValueError("refused")

    work.add_handler("domain-feature-pre-set:gui", veto)
    with pytest.raises(exc.QubesValueError):
        work.features["gui"] = "1"
    assert "gui" not in work.features


# -- tags --------------------------------------------------------------------


def test_tags_are_loaded(app):
    assert set(app.domains["work"].tags) == {
        "guivm-dom0",
        "audiovm-dom0",
        "created-by-dom0",
    }


def test_tags_behave_as_a_set(app):
    tags = app.domains["work"].tags
    tags.add("extra")
    tags.add("extra")
    assert "extra" in tags
    assert len(tags) == 4
    tags.discard("extra")
    tags.discard("extra")
    assert "extra" not in tags


def test_tag_add_and_delete_fire_events(app):
    work = app.domains["work"]
    seen = []

    def record(vm, event, **kwargs):
        seen.append((event, kwargs))

    work.add_handler("domain-tag-add:*", record)
    work.add_handler("domain-tag-delete:*", record)
    work.tags.add("extra")
    work.tags.add("extra")
    work.tags.remove("extra")
    assert seen == [
        ("domain-tag-add:extra", {"tag": "extra"}),
        ("domain-tag-delete:extra", {"tag": "extra"}),
    ]


def test_removing_a_missing_tag_is_a_named_key_error(app):
    with pytest.raises(exc.QubesTagNotFoundError):
        app.domains["work"].tags.remove("nope")


@pytest.mark.parametrize("tag", ["", "two words", "a/b", "é"])
def test_invalid_tag_is_refused(app, tag):
    tags = app.domains["work"].tags
    with pytest.raises(exc.QubesValueError):
        tags.add(tag)
    assert len(tags) == 3


# -- labels ------------------------------------------------------------------

STANDARD = [
    (1, "red", "0xcc0000"),
    (2, "orange", "0xf57900"),
    (3, "yellow", "0xedd400"),
    (4, "green", "0x73d216"),
    (5, "gray", "0x555555"),
    (6, "blue", "0x3465a4"),
    (7, "purple", "0x75507b"),
    (8, "black", "0x000000"),
]


def test_there_are_eight_standard_labels():
    assert {
        index: (name, color) for index, (color, name) in STANDARD_LABELS.items()
    } == {index: (name, color) for index, name, color in STANDARD}


@pytest.mark.parametrize(("index", "name", "color"), STANDARD)
def test_standard_label_is_loaded_with_its_colour(app, index, name, color):
    label = app.get_label(name)
    assert label.index == index
    assert label.color == color
    assert app.get_label(index) is label
    assert app.get_label(f"label-{index}") is label


def test_label_colour_as_rgb():
    assert Label(1, "0xcc0000", "red").color_rgb == (0xCC, 0, 0)


def test_unknown_label_is_a_named_key_error(app):
    with pytest.raises(exc.QubesLabelNotFoundError) as info:
        app.get_label("pink")
    assert isinstance(info.value, KeyError)


def test_domain_label_is_set_by_name(app):
    work = app.domains["work"]
    work.label = "green"
    assert work.label is app.get_label("green")
    with pytest.raises(exc.QubesLabelNotFoundError):
        work.label = "pink"
    assert work.label.name == "green"


# -- devices -----------------------------------------------------------------


def test_devices_are_grouped_by_class(app):
    devices = app.domains["work"].devices
    assert isinstance(devices["pci"], DeviceCollection)
    assert devices["pci"] is devices["pci"]
    assert len(devices["usb"]) == 0


def test_assigned_device_is_listed(app):
    work = app.domains["work"]
    dom0 = app.domains["dom0"]
    work.devices["pci"].assign(pci(dom0, **{"no-strict-reset": "True"}))
    (assigned,) = work.devices["pci"].get_assigned_devices()
    assert assigned.backend_domain is dom0
    assert assigned.ident == "00_14.0"
    assert assigned.options == {"no-strict-reset": "True"}


def test_device_assigned_twice_is_refused(app):
    work = app.domains["work"]
    work.devices["pci"].assign(pci(app.domains["dom0"]))
    with pytest.raises(exc.QubesDeviceError):
        work.devices["pci"].assign(pci(app.domains["dom0"]))
    assert len(work.devices["pci"]) == 1


def test_unassigned_device_is_gone(app):
    work = app.domains["work"]
    work.devices["pci"].assign(pci(app.domains["dom0"]))
    work.devices["pci"].unassign("dom0", "00_14.0")
    assert len(work.devices["pci"]) == 0
    with pytest.raises(exc.QubesDeviceError):
        work.devices["pci"].unassign("dom0", "00_14.0")


def test_device_assign_fires_events(app):
    work = app.domains["work"]
    seen = []

    def record(vm, event, **kwargs):
        seen.append(event)

    work.add_handler("device-pre-assign:pci", record)
    work.add_handler("device-assign:pci", record)
    work.devices["pci"].assign(pci(app.domains["dom0"]))
    assert seen == ["device-pre-assign:pci", "device-assign:pci"]


def test_device_assignment_is_saved_and_loaded_back(app, sample_path):
    work = app.domains["work"]
    work.devices["pci"].assign(pci(app.domains["sys-net"], "00_19.0"))
    work.devices["pci"].assign(
        pci(app.domains["dom0"], **{"no-strict-reset": "True"})
    )
    app.save()
    again = qubes.Qubes(str(sample_path))
    assigned = {
        (a.backend_domain, a.ident): a.options
        for a in again.domains["work"].devices["pci"]
    }
    assert assigned == {
        (again.domains["sys-net"], "00_19.0"): {},
        (again.domains["dom0"], "00_14.0"): {"no-strict-reset": "True"},
    }


@pytest.mark.parametrize("devclass", ["", "PCI", "1pci", "p c i"])
def test_invalid_device_class_is_refused(app, devclass):
    with pytest.raises(exc.QubesDeviceError):
        app.domains["work"].devices[devclass]


# -- volumes -----------------------------------------------------------------

VOLUME_KEYS = [
    "name",
    "pool",
    "vid",
    "revisions_to_keep",
    "rw",
    "save_on_stop",
    "snap_on_start",
    "size",
    "source",
]


def test_volume_config_is_kept_as_read(app):
    root = app.domains["work"].volume_config["root"]
    assert root == {
        "name": "root",
        "pool": "varlibqubes",
        "vid": "appvms/work/root",
        "revisions_to_keep": "0",
        "rw": "True",
        "save_on_stop": "False",
        "snap_on_start": "True",
        "size": "10737418240",
        "source": "vm-templates/fedora-41/root",
    }
    assert list(root) == VOLUME_KEYS


def test_volumes_give_a_typed_view(app):
    volumes = app.domains["work"].volumes
    root = volumes["root"]
    assert isinstance(root, Volume)
    assert root.pool is app.pools["varlibqubes"]
    assert root.rw is True
    assert root.snap_on_start is True
    assert root.save_on_stop is False
    assert root.source == "vm-templates/fedora-41/root"
    assert root.size == 10 * 1024**3
    assert root.revisions_to_keep == 0
    assert root.ephemeral is False


def test_kernel_volume_comes_from_the_kernel_pool(app):
    kernel = app.domains["work"].volumes["kernel"]
    assert isinstance(kernel, KernelVolume)
    assert kernel.pool is app.pools["linux-kernel"]
    assert kernel.vmlinuz == "/var/lib/qubes/vm-kernels/6.12.1-1.fc41/vmlinuz"
    assert kernel.rw is False


def test_a_kernel_set_later_brings_its_kernel_volume(app, sample_path):
    # A domain made while no kernel was set (a new store has no default
    # kernel) can boot once it is given one.
    vm = app.add_new_vm("StandaloneVM", name="late", label="red", kernel="")
    assert "kernel" not in vm.volume_config
    vm.kernel = app.default_kernel
    assert vm.volumes["kernel"].vid == app.default_kernel
    assert vm.volume_config["kernel"]["pool"] == "linux-kernel"
    asyncio.run(vm.start())
    assert vm.is_running()
    app.save()
    again = qubes.Qubes(str(sample_path))
    assert again.domains["late"].volume_config["kernel"]["vid"] == vm.kernel


def test_a_default_kernel_set_later_reaches_a_domain_made_without(app):
    default = app.default_kernel
    app.default_kernel = ""
    vm = app.add_new_vm("StandaloneVM", name="late", label="red")
    assert "kernel" not in vm.volume_config
    app.default_kernel = default
    assert vm.kernel == default
    asyncio.run(vm.start())
    assert vm.is_running()


def test_ephemeral_volume_attribute_is_kept_and_saved(sample_path):
    text = sample_path.read_text().replace(
        'vid="appvms/work/volatile"',
        'vid="appvms/work/volatile" ephemeral="True"',
    )
    sample_path.write_text(text)
    app = qubes.Qubes(str(sample_path))
    assert app.domains["work"].volumes["volatile"].ephemeral is True
    app.save()
    again = qubes.Qubes(str(sample_path))
    volatile = again.domains["work"].volume_config["volatile"]
    assert volatile["ephemeral"] == "True"


def test_new_appvm_root_is_a_snapshot_of_its_template_root(app):
    vm = app.add_new_vm("AppVM", name="fresh", label="red")
    root = vm.volume_config["root"]
    template_root = app.domains["fedora-41"].volume_config["root"]
    assert root["source"] == template_root["vid"]
    assert root["snap_on_start"] == "True"
    assert root["save_on_stop"] == "False"
    assert root["vid"] == "appvms/fresh/root"


def test_new_appvm_gets_its_own_private_and_a_volatile_volume(app):
    vm = app.add_new_vm("AppVM", name="fresh", label="red")
    config = vm.volume_config
    assert set(config) == {"root", "private", "volatile", "kernel"}
    assert config["private"]["save_on_stop"] == "True"
    assert "source" not in config["private"]
    assert config["kernel"]["vid"] == "6.12.1-1.fc41"


def test_new_appvm_of_a_new_template_snapshots_that_template(app):
    template = app.add_new_vm("TemplateVM", name="debian-12", label="black")
    vm = app.add_new_vm("AppVM", name="deb", label="red", template=template)
    assert (
        template.volume_config["root"]["vid"] == "vm-templates/debian-12/root"
    )
    assert vm.volume_config["root"]["source"] == "vm-templates/debian-12/root"


def test_new_domain_volume_config_is_saved(app, sample_path):
    app.add_new_vm("AppVM", name="fresh", label="red")
    app.save()
    again = qubes.Qubes(str(sample_path))
    root = again.domains["fresh"].volume_config["root"]
    assert root["source"] == "vm-templates/fedora-41/root"
