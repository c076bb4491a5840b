"""The backend's XML and capabilities, on every engine."""

from __future__ import annotations

import os

import lxml.etree
import pytest

from qubes import exc
from qubes.backends import Backend, Capabilities
from qubes.vm.qubesvm import VIRT_MODES


def test_backend_follows_the_protocol(host):
    assert isinstance(host.backend, Backend)


def test_capabilities_record(host):
    caps = host.backend.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.virt_modes <= set(VIRT_MODES)
    assert caps.networking
    assert not caps.simulated
    xml = lxml.etree.fromstring(host.vm("work").create_config_file())
    assert xml.get("type") == caps.domain_type


@pytest.mark.parametrize("mode", VIRT_MODES)
def test_virt_modes_the_backend_lacks_are_refused(host, mode):
    vm = host.vm("work")
    vm.virt_mode = mode
    if mode in host.backend.capabilities.virt_modes:
        assert vm.create_config_file()
        return
    with pytest.raises(exc.QubesUnsupportedError, match=mode):
        vm.create_config_file()


def test_config_is_reused_while_nothing_changes(host):
    vm = host.vm("work")
    first = vm.create_config_file()
    assert vm.create_config_file() is first
    vm.memory = 512
    changed = vm.create_config_file()
    assert changed != first
    assert "512" in changed


def test_config_follows_the_template(host):
    vm = host.vm("work")
    before = vm.create_config_file()
    host.vm("tpl").vcpus = 3
    after = vm.create_config_file()
    assert before != after
    vcpu = lxml.etree.fromstring(after).findtext("vcpu")
    assert vcpu == "3"


def test_xml_names_the_domain_and_its_uuid(host):
    vm = host.vm("work")
    xml = lxml.etree.fromstring(vm.create_config_file())
    assert xml.findtext("name") == vm.name
    assert xml.findtext("uuid") == str(vm.uuid)


def test_netvm_networks_exist_once_domains_run(host):
    """KVM and LXC plug a domain into its netvm's libvirt network, which
    the backend makes at the netvm's (or its client's) start."""
    import asyncio

    asyncio.run(host.vm("work").start())
    names = host.backend.networks(_spec(host, "work"))
    if not names:
        assert host.backend.name == "xen"  # vifs, no libvirt network
        return
    if not host.engine.libvirt:
        # liblxc: a host bridge per network.
        from qubes.backends._base import bridge_name

        for name in names:
            assert os.path.isdir(f"/sys/class/net/{bridge_name(name)}")
        return
    conn = host.backend.connection.call("open", lambda c: c)
    for name in names:
        assert conn.networkLookupByName(name).isActive()


def _spec(host, name):
    from qubes.backends.spec import domain_spec

    return domain_spec(host.vm(name))
