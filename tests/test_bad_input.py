"""A bad qubes.xml: each kind of mistake gives its own named error, which
names the file, the domain and the property, and the file is left alone.

Each bad file is the sample with one edit.
"""

import lxml.etree
import pytest

import qubes
from qubes import exc

WORK_NAME = '<property name="name">work</property>'
WORK_TEMPLATE = (
    '<property name="uuid">388d0cf6-0449-46ec-b90d-c0b13cd9dd98</property>\n'
    '        <property name="template">fedora-41</property>'
)


def edit(sample_path, old, new):
    """Replace the one occurrence of *old* in the sample by *new*.

    :returns: the bytes written, to compare with the file afterwards
    """
    text = sample_path.read_text()
    assert text.count(old) == 1, f"{old!r} is not once in the sample"
    data = text.replace(old, new).encode()
    sample_path.write_bytes(data)
    return data


def add_to_work(sample_path, xml):
    """Add property elements to work's properties."""
    return edit(sample_path, WORK_NAME, WORK_NAME + xml)


def load_fails(sample_path, error_class):
    """Load the store, expecting *error_class*; return the error."""
    with pytest.raises(error_class) as info:
        qubes.Qubes(str(sample_path))
    return info.value


def assert_names(error, sample_path, domain=None, prop=None):
    message = str(error)
    assert str(sample_path) in message
    assert error.path == str(sample_path)
    if domain is not None:
        assert repr(domain) in message
        assert error.domain == domain
    if prop is not None:
        assert repr(prop) in message


def test_not_well_formed_xml(sample_path):
    data = edit(sample_path, "</domains>", "")
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path)
    assert "malformed" in str(error)
    assert error.line is not None
    assert sample_path.read_bytes() == data


def test_truncated_file(sample_path, sample_bytes):
    data = sample_bytes[: len(sample_bytes) // 2]
    sample_path.write_bytes(data)
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path)
    assert sample_path.read_bytes() == data


def test_empty_file(sample_path):
    sample_path.write_bytes(b"")
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path)
    assert sample_path.read_bytes() == b""


def test_wrong_root_element(sample_path):
    edit(sample_path, "<qubes>", "<libvirt>")
    data = edit(sample_path, "</qubes>", "</libvirt>")
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path)
    assert "<libvirt>" in str(error)
    assert sample_path.read_bytes() == data


def test_unexpected_section(sample_path):
    data = edit(sample_path, "  <domains>", "  <networks/>\n  <domains>")
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path)
    assert "networks" in str(error)
    assert sample_path.read_bytes() == data


def test_unknown_domain_class(sample_path):
    data = edit(
        sample_path,
        '<domain id="domain-3" class="AppVM">',
        '<domain id="domain-3" class="HyperVM">',
    )
    error = load_fails(sample_path, exc.QubesUnknownClassError)
    assert_names(error, sample_path, domain="work")
    assert "HyperVM" in str(error)
    assert sample_path.read_bytes() == data


def test_unknown_property(sample_path):
    data = add_to_work(sample_path, '<property name="colour">red</property>')
    error = load_fails(sample_path, exc.QubesNoSuchPropertyError)
    assert_names(error, sample_path, domain="work", prop="colour")
    assert sample_path.read_bytes() == data


def test_unknown_global_property(sample_path):
    data = edit(
        sample_path,
        '<property name="clockvm">',
        '<property name="clock_vm">',
    )
    error = load_fails(sample_path, exc.QubesNoSuchPropertyError)
    assert_names(error, sample_path, prop="clock_vm")
    assert sample_path.read_bytes() == data


def test_duplicate_qid(sample_path):
    data = edit(
        sample_path,
        '<property name="qid">3</property>',
        '<property name="qid">2</property>',
    )
    error = load_fails(sample_path, exc.QubesDuplicateError)
    assert_names(error, sample_path, domain="work")
    assert "qid 2" in str(error)
    assert "sys-net" in str(error)
    assert sample_path.read_bytes() == data


def test_duplicate_name(sample_path):
    data = edit(
        sample_path, WORK_NAME, '<property name="name">sys-net</property>'
    )
    error = load_fails(sample_path, exc.QubesDuplicateError)
    assert_names(error, sample_path, domain="sys-net")
    assert "name" in error.message
    assert sample_path.read_bytes() == data


def test_duplicate_uuid(sample_path):
    data = edit(
        sample_path,
        "388d0cf6-0449-46ec-b90d-c0b13cd9dd98",
        "14924e08-b6df-44a8-a032-81744a634e0a",
    )
    error = load_fails(sample_path, exc.QubesDuplicateError)
    assert_names(error, sample_path, domain="work")
    assert "UUID" in str(error)
    assert sample_path.read_bytes() == data


@pytest.mark.parametrize("name", ["1work", "work-dm", "default", "a b"])
def test_invalid_name_in_the_file(sample_path, name):
    data = edit(
        sample_path, WORK_NAME, f'<property name="name">{name}</property>'
    )
    error = load_fails(sample_path, exc.QubesVMInvalidNameError)
    assert_names(error, sample_path, domain=name, prop="name")
    assert sample_path.read_bytes() == data


def test_template_names_a_missing_domain(sample_path):
    data = edit(
        sample_path,
        WORK_TEMPLATE,
        WORK_TEMPLATE.replace("fedora-41", "debian-12"),
    )
    error = load_fails(sample_path, exc.QubesVMNotFoundError)
    assert_names(error, sample_path, domain="work", prop="template")
    assert "debian-12" in str(error)
    assert sample_path.read_bytes() == data


def test_netvm_names_a_missing_domain(sample_path):
    data = add_to_work(
        sample_path, '<property name="netvm">sys-firewall</property>'
    )
    error = load_fails(sample_path, exc.QubesVMNotFoundError)
    assert_names(error, sample_path, domain="work", prop="netvm")
    assert "sys-firewall" in str(error)
    assert sample_path.read_bytes() == data


def test_global_property_names_a_missing_domain(sample_path):
    data = edit(
        sample_path,
        '<property name="updatevm">sys-net</property>',
        '<property name="updatevm">sys-whonix</property>',
    )
    error = load_fails(sample_path, exc.QubesVMNotFoundError)
    assert_names(error, sample_path, prop="updatevm")
    assert "sys-whonix" in str(error)
    assert sample_path.read_bytes() == data


def test_device_backend_names_a_missing_domain(sample_path):
    data = edit(
        sample_path,
        '<features/>\n      <tags>\n        <tag name="guivm-dom0"/>\n'
        '        <tag name="audiovm-dom0"/>\n'
        '        <tag name="created-by-dom0"/>',
        '<features/>\n      <devices class="usb">'
        '<device backend-domain="sys-usb" id="2-1"/></devices>\n'
        '      <tags>\n        <tag name="guivm-dom0"/>\n'
        '        <tag name="audiovm-dom0"/>\n'
        '        <tag name="created-by-dom0"/>',
    )
    error = load_fails(sample_path, exc.QubesVMNotFoundError)
    assert_names(error, sample_path, domain="work")
    assert "sys-usb" in str(error)
    assert sample_path.read_bytes() == data


def test_template_of_the_wrong_class(sample_path):
    data = edit(
        sample_path,
        WORK_TEMPLATE,
        WORK_TEMPLATE.replace("fedora-41", "sys-net"),
    )
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert_names(error, sample_path, domain="work", prop="template")
    assert sample_path.read_bytes() == data


def test_label_that_does_not_exist(sample_path):
    data = edit(
        sample_path,
        '<property name="label">blue</property>',
        '<property name="label">pink</property>',
    )
    error = load_fails(sample_path, exc.QubesLabelNotFoundError)
    assert_names(error, sample_path, domain="work", prop="label")
    assert "pink" in str(error)
    assert sample_path.read_bytes() == data


def test_property_given_twice(sample_path):
    data = add_to_work(
        sample_path,
        '<property name="memory">500</property>'
        '<property name="memory">600</property>',
    )
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path, domain="work", prop="memory")
    assert "twice" in str(error)
    assert sample_path.read_bytes() == data


def test_reference_property_given_twice(sample_path):
    data = edit(
        sample_path,
        WORK_TEMPLATE,
        WORK_TEMPLATE + '<property name="template">fedora-41</property>',
    )
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path, domain="work", prop="template")
    assert sample_path.read_bytes() == data


def test_invalid_value(sample_path):
    data = add_to_work(sample_path, '<property name="memory">lots</property>')
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert_names(error, sample_path, domain="work", prop="memory")
    assert "lots" in str(error)
    assert sample_path.read_bytes() == data


def test_invalid_boolean(sample_path):
    data = add_to_work(
        sample_path, '<property name="autostart">maybe</property>'
    )
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert_names(error, sample_path, domain="work", prop="autostart")
    assert sample_path.read_bytes() == data


def test_invalid_uuid(sample_path):
    data = edit(
        sample_path,
        "388d0cf6-0449-46ec-b90d-c0b13cd9dd98",
        "not-a-uuid",
    )
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert_names(error, sample_path, domain="work", prop="uuid")
    assert sample_path.read_bytes() == data


def test_missing_required_property(sample_path):
    data = edit(sample_path, '<property name="qid">3</property>', "")
    error = load_fails(sample_path, exc.QubesPropertyAccessError)
    assert_names(error, sample_path, domain="work", prop="qid")
    assert sample_path.read_bytes() == data


def test_netvm_loop_in_the_file(sample_path):
    add_to_work(
        sample_path,
        '<property name="provides_network">True</property>'
        '<property name="netvm">sys-net</property>',
    )
    data = edit(
        sample_path,
        '<property name="netvm"></property>',
        '<property name="netvm">work</property>',
    )
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert_names(error, sample_path, prop="netvm")
    assert "loop" in str(error)
    assert "work" in str(error)
    assert "sys-net" in str(error)
    assert sample_path.read_bytes() == data


def test_netvm_that_provides_no_network(sample_path):
    data = add_to_work(
        sample_path, '<property name="netvm">fedora-41-dvm</property>'
    )
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert_names(error, sample_path, domain="work", prop="netvm")
    assert sample_path.read_bytes() == data


def test_store_without_dom0(sample_path, sample_bytes):
    root = lxml.etree.fromstring(sample_bytes)
    domains = root.find("domains")
    domains.remove(domains.find("domain[@class='AdminVM']"))
    data = lxml.etree.tostring(root)
    sample_path.write_bytes(data)
    error = load_fails(sample_path, exc.QubesXMLError)
    assert_names(error, sample_path)
    assert "dom0" in str(error)
    assert sample_path.read_bytes() == data


def test_missing_store_file(tmp_path):
    path = tmp_path / "nowhere" / "qubes.xml"
    error = load_fails(path, exc.QubesStoreNotFoundError)
    assert isinstance(error, FileNotFoundError)
    assert_names(error, path)
    assert not path.parent.exists()


def test_error_in_a_bad_file_is_one_line(sample_path):
    add_to_work(sample_path, '<property name="memory">lots</property>')
    error = load_fails(sample_path, exc.QubesPropertyValueError)
    assert "\n" not in str(error)
