"""Skeletons: a domain's XML built from another domain's skeleton of
the same shape is the XML built from scratch.

Each builder keeps one tree per shape and fills in the values that every
domain has its own of. A value that a builder wrote into the tree
without marking it would leak from the first domain of a shape into the
next: each case below changes every such value at once, builds the
first domain then the second, and compares the second with a build from
an empty cache. The XML is validated against libvirt's schema too.
"""

import lxml.etree
import pytest

from qubes.backends import _xml
from qubes.backends.kvm import _xml as kvm_xml
from qubes.backends.lxc import _xml as lxc_xml
from qubes.backends.spec import DiskSpec, DomainSpec, KernelSpec, NetSpec
from qubes.backends.xen import _xml as xen_xml

KERNEL = KernelSpec("6.1", "/k/6.1/vmlinuz", "/k/6.1/initramfs")


def _disks(folder, fmt="raw", suffix=".img"):
    return (
        DiskSpec("root", f"{folder}/root{suffix}", fmt, False),
        DiskSpec("private", f"{folder}/private{suffix}", fmt, True),
        DiskSpec("volatile", f"{folder}/volatile{suffix}", fmt, True),
    )


def _appvm(number, fmt="raw", suffix=".img", virt_mode="pvh"):
    """AppVM *number*: every per-domain value depends on it."""
    return DomainSpec(
        name=f"app-{number}",
        uuid=f"00000000-0000-4000-8000-{number:012d}",
        qid=number,
        klass="AppVM",
        memory=400,
        maxmem=4000,
        vcpus=2,
        virt_mode=virt_mode,
        kernel=KERNEL,
        kernelopts="",
        disks=_disks(f"/pool/app-{number}", fmt, suffix),
        net=NetSpec(
            "sys-net",
            2,
            f"00:16:3e:5e:6c:{number:02x}",
            f"10.137.0.{number}",
            "10.138.0.1",
        ),
        provides_network=False,
        mac=f"00:16:3e:5e:6c:{number:02x}",
        ip=f"10.137.0.{number}",
        pci=(),
        features=(),
        debug=False,
    )


def _netvm(number, fmt="raw", suffix=".img"):
    """A netvm of its own network, with no netvm."""
    return _appvm(number, fmt, suffix)._replace(
        name=f"net-{number}", net=None, provides_network=True
    )


def _builders():
    return {
        "xen": (xen_xml.build, xen_xml._SKELETONS),
        "kvm": (
            lambda spec: kvm_xml.build(spec, "qemu", "default", "/logs"),
            kvm_xml._SKELETONS,
        ),
        "lxc": (lxc_xml.build, lxc_xml._SKELETONS),
    }


CASES = {
    "xen": [_appvm, _netvm],
    "kvm": [_appvm, _netvm],
    "lxc": [
        _appvm,
        _netvm,
        lambda n: _appvm(n, "dir", ""),
        lambda n: _netvm(n, "dir", ""),
    ],
}


@pytest.mark.parametrize(
    "backend, case",
    [(b, i) for b, cases in CASES.items() for i in range(len(cases))],
)
def test_second_domain_of_a_shape_is_built_as_from_scratch(
    backend, case, domain_schema
):
    build, skeletons = _builders()[backend]
    make = CASES[backend][case]
    first, second = make(3), make(41)
    assert _xml.shape(first) == _xml.shape(second)
    skeletons.clear()
    first_xml = build(first)
    reused = build(second)
    skeletons.clear()
    fresh = build(second)
    assert reused == fresh
    assert reused != first_xml
    # Nothing of the first domain is left in the second's XML.
    assert "app-3" not in reused and "net-3" not in reused
    domain_schema.assertValid(lxml.etree.fromstring(reused.encode()))
    # And the first again, from the second's skeleton.
    assert build(first) == first_xml


def test_a_value_that_xml_cannot_carry_is_refused_on_a_reused_skeleton():
    build, skeletons = _builders()["xen"]
    skeletons.clear()
    build(_appvm(3))
    bad = _appvm(4)._replace(name="app\x01")
    with pytest.raises(Exception) as raised:
        build(bad)
    assert "cannot be written as XML" in str(raised.value)
    # The skeleton still serves the next domain.
    assert "app-5" in build(_appvm(5))


def test_skeletons_start_over_when_full():
    skeletons = _xml.Skeletons(size=2)
    made = []

    def tree(marks):
        made.append(1)
        root = lxml.etree.Element("domain")
        marks.text(_xml.sub(root, "name"), _xml.spec_name)
        return root

    for number in range(3):
        spec = _appvm(number)
        skeletons.xml(("shape", number), spec, tree)
    assert len(made) == 3
    assert skeletons.xml(("shape", 2), _appvm(9), tree).count("app-9") == 1
    assert len(made) == 3


def test_every_field_but_the_own_ones_is_in_the_shape():
    # A field added to the spec but not to the shape would let one
    # domain's skeleton serve another whose XML differs.
    spec = _appvm(3)
    other = {
        "klass": "TemplateVM",
        "memory": 401,
        "maxmem": 4001,
        "vcpus": 3,
        "virt_mode": "hvm",
        "kernel": None,
        "kernelopts": "quiet",
        "disks": spec.disks[:2],
        "net": None,
        "provides_network": True,
        "pci": ((0, 20, 0),),
        "features": (("uefi", "1"),),
        "debug": True,
    }
    assert set(other) | _xml.OWN_FIELDS == set(DomainSpec._fields)
    for field, value in other.items():
        changed = spec._replace(**{field: value})
        assert _xml.shape(changed) != _xml.shape(spec), field
