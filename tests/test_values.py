"""Values that qubes.xml or libvirt's schema cannot hold are refused
where they are set, with a named error."""

from __future__ import annotations

import pytest

from qubes import exc
from qubes.devices import DeviceAssignment
from qubes.storage import make_pool

UNSTORABLE = ["a\x01b", "\x00", "bad\ud800", "x\ufffe"]


@pytest.mark.parametrize("value", UNSTORABLE, ids=ascii)
@pytest.mark.parametrize("prop", ["kernelopts", "default_user"])
def test_unstorable_characters_are_refused(app, prop, value):
    work = app.domains["work"]
    before = getattr(work, prop)
    with pytest.raises(exc.QubesPropertyValueError):
        setattr(work, prop, value)
    assert getattr(work, prop) == before


@pytest.mark.parametrize("value", UNSTORABLE, ids=ascii)
def test_unstorable_characters_in_features_are_refused(app, value):
    work = app.domains["work"]
    with pytest.raises(exc.QubesValueError):
        work.features["f"] = value
    with pytest.raises(exc.QubesValueError):
        work.features["f" + value] = "1"
    assert "f" not in work.features


def test_a_number_property_given_words_says_so(app):
    with pytest.raises(exc.QubesPropertyValueError) as caught:
        app.domains["work"].memory = "abc"
    assert str(caught.value).endswith("invalid value 'abc': not a whole number")


@pytest.mark.parametrize(
    "name",
    [
        "service.",
        "service.a/b",
        "service.a//b",
        "service.a b",
        "service.x\ny",
        "service.<x>",
        "service.\u00e9",
    ],
)
def test_a_service_name_that_is_no_qubesdb_name_is_refused(app, name):
    work = app.domains["work"]
    with pytest.raises(exc.QubesValueError, match="service"):
        work.features[name] = "1"
    assert name not in work.features
    work.features["service.a-b"] = "1"
    assert work.features["service.a-b"] == "1"


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("memory", 99999999999999999999),
        ("maxmem", 2**40),
        ("vcpus", 4294967296),
        ("vcpus", 0),
        ("qrexec_timeout", 10**12),
    ],
)
def test_numbers_out_of_range_are_refused(app, prop, value):
    with pytest.raises(exc.QubesPropertyValueError, match="out of range"):
        setattr(app.domains["work"], prop, value)


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("mac", "00:16:3e:00:00:09\n"),
        ("kernel", "6.12.1-1.fc41\n"),
    ],
)
def test_a_trailing_newline_does_not_slip_through(app, prop, value):
    with pytest.raises(exc.QubesPropertyValueError):
        setattr(app.domains["work"], prop, value)


@pytest.mark.parametrize("name", ["none\n", "default\n", "x-dm\n", "evil\n"])
def test_names_with_a_trailing_newline_are_refused(app, name):
    with pytest.raises(exc.QubesVMInvalidNameError):
        app.add_new_vm("AppVM", name=name, label="red")


@pytest.mark.parametrize("ident", ["-1_ff.f", "100_14.0", "00_ff.f", "00_14.8"])
def test_pci_ids_out_of_range_are_refused(app, ident):
    sys_net = app.domains["sys-net"]
    dom0 = app.domains["dom0"]
    with pytest.raises(exc.QubesDeviceError):
        sys_net.devices["pci"].assign(DeviceAssignment(dom0, ident))
    assert not list(sys_net.devices["pci"])


@pytest.mark.parametrize("folder", ["relative/dir", "", "/var/lib/qubes\n"])
def test_pool_folders_must_be_absolute_and_printable(folder):
    with pytest.raises(exc.QubesStorageError, match="dir_path"):
        make_pool("p", {"driver": "file", "dir_path": folder})


@pytest.mark.parametrize("vid", ["/etc/passwd", "../../etc", "a/\nb", ""])
def test_volume_ids_stay_inside_their_pool(tmp_path, vid):
    pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
    config = {"name": "private", "pool": "p", "vid": vid}
    with pytest.raises(exc.QubesStorageError, match="volume id"):
        pool.init_volume(None, config)


def test_per_domain_default_dispvm_must_be_a_disposable_template(app):
    with pytest.raises(exc.QubesPropertyValueError, match="disposable"):
        app.domains["work"].default_dispvm = "work"
