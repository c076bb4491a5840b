"""How the KVM backend decides between ``kvm`` and ``qemu`` domains.

The two capability documents in tests/data were captured from the
libvirtd of a machine of this project, whose /dev/kvm is a nested KVM
that cannot run an x86_64 guest.
"""

import pathlib

from qubes.backends.kvm import accelerated_types, kvm_runs_x86_64

DATA = pathlib.Path(__file__).parent / "data"


def test_capabilities_offer_kvm_here():
    caps = (DATA / "capabilities-qemu.xml").read_text()
    assert "kvm" in accelerated_types(caps)
    assert "qemu" in accelerated_types(caps)


def test_nested_kvm_without_a_usable_x86_64_cpu_is_refused():
    domcaps = (DATA / "domcaps-kvm-unusable.xml").read_text()
    assert not kvm_runs_x86_64(domcaps)


def test_kvm_with_a_usable_baseline_cpu_is_accepted():
    domcaps = (DATA / "domcaps-kvm-unusable.xml").read_text()
    usable = domcaps.replace(
        "<model usable='no' vendor='unknown'>qemu64</model>",
        "<model usable='yes' vendor='unknown'>qemu64</model>",
    )
    assert usable != domcaps
    assert kvm_runs_x86_64(usable)


def test_capabilities_without_cpu_models_mean_no_kvm():
    assert not kvm_runs_x86_64("<domainCapabilities/>")
