"""Domain names: the rules, checked by the model itself."""

import pathlib

import pytest

from qubes import exc
from qubes.vm import MAX_NAME_LENGTH, validate_name

VALID = [
    "a",
    "office",
    "Work2",
    "sys-usb",
    "debian-12-dvm",
    "my_vm.2",
    "a" * 31,
    "dm",
    "sys-dmz",
]

INVALID = [
    "none",
    "default",
    "Domain-0",
    "sys-dm",
    "-dm",
    "a" * 32,
    "1abc",
    "_abc",
    ".abc",
    "-abc",
    "a b",
    "a/b",
    "a:b",
    "é",
    "",
]

NON_STRINGS = [None, 42, True, 3.5, b"work2", pathlib.PurePosixPath("work2")]


def test_the_length_limit_is_xen_s():
    assert MAX_NAME_LENGTH == 31


@pytest.mark.parametrize("name", VALID)
def test_validate_name_accepts(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_validate_name_refuses(name):
    with pytest.raises(exc.QubesVMInvalidNameError) as info:
        validate_name(name)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", NON_STRINGS, ids=repr)
def test_validate_name_refuses_non_strings(name):
    with pytest.raises(exc.QubesVMInvalidNameError):
        validate_name(name)


@pytest.mark.parametrize("name", VALID)
def test_a_domain_cannot_be_renamed_even_to_a_valid_name(app, name):
    # As on Qubes: the name is in the volumes' paths and the engine's
    # definition; it is written once.
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyAccessError) as info:
        work.name = name
    assert info.value.prop == "name"
    assert work.name == "work"
    assert app.domains["work"] is work
    assert work.log.name == "vm.work"


@pytest.mark.parametrize("name", INVALID)
def test_renaming_to_an_invalid_name_is_refused(app, name):
    work = app.domains["work"]
    with pytest.raises(exc.QubesVMInvalidNameError) as info:
        work.name = name
    assert info.value.prop == "name"
    assert work.name == "work"
    assert app.domains["work"] is work


@pytest.mark.parametrize("name", NON_STRINGS, ids=repr)
def test_renaming_to_a_non_string_is_refused(app, name):
    work = app.domains["work"]
    with pytest.raises(exc.QubesValueError):
        work.name = name
    assert work.name == "work"


@pytest.mark.parametrize("name", VALID)
def test_domain_is_created_with_a_valid_name(app, name):
    vm = app.add_new_vm("AppVM", name=name, label="red")
    assert app.domains[name] is vm


@pytest.mark.parametrize("name", INVALID)
def test_creating_a_domain_with_an_invalid_name_is_refused(app, name):
    with pytest.raises(exc.QubesVMInvalidNameError):
        app.add_new_vm("AppVM", name=name, label="red")
    assert len(app.domains) == 5


@pytest.mark.parametrize("name", NON_STRINGS, ids=repr)
def test_creating_a_domain_with_a_non_string_name_is_refused(app, name):
    with pytest.raises(exc.QubesValueError):
        app.add_new_vm("AppVM", name=name, label="red")
    assert len(app.domains) == 5


def test_creating_a_domain_without_a_name_is_refused(app):
    with pytest.raises(exc.QubesPropertyAccessError) as info:
        app.add_new_vm("AppVM", label="red")
    assert info.value.prop == "name"
    assert len(app.domains) == 5


def test_renaming_to_a_name_in_use_is_refused(app):
    work = app.domains["work"]
    with pytest.raises(exc.QubesPropertyAccessError):
        work.name = "sys-net"
    assert work.name == "work"
    assert app.domains["sys-net"] is not work


def test_creating_a_domain_with_a_name_in_use_is_refused(app):
    with pytest.raises(exc.QubesDuplicateError):
        app.add_new_vm("AppVM", name="work", label="red")
    assert len(app.domains) == 5
