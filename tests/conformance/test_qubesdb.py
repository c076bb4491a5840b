"""The QubesDB of a running domain, on every engine."""

from __future__ import annotations

import asyncio


def test_qubesdb_holds_identity_and_network(host):
    vm = host.vm("work")
    asyncio.run(vm.start())
    qdb = vm.qdb
    assert qdb.read("/name") == vm.name.encode()
    assert qdb.read("/qubes-vm-type") == b"AppVM"
    assert qdb.read("/qubes-ip") == vm.visible_ip.encode()
    assert qdb.read("/qubes-gateway") == host.vm("sys-net").ip.encode()
    assert qdb.read("/qubes-primary-dns") == b"10.139.1.1"


def test_netvm_qubesdb_has_its_gateway(host):
    net = host.vm("sys-net")
    asyncio.run(net.start())
    assert net.qdb.read("/qubes-netvm-gateway") == net.ip.encode()


def test_service_features_become_qubesdb_entries(host):
    vm = host.vm("work")
    vm.features["service.cups"] = "1"
    vm.features["service.crond"] = ""
    asyncio.run(vm.start())
    assert vm.qdb.read("/qubes-service/cups") == b"1"
    assert vm.qdb.read("/qubes-service/crond") == b"0"


def test_watch_qdb_path_fires_domain_qdb_change(host):
    vm = host.vm("work")
    seen = []
    vm.add_handler(
        "domain-qdb-change:/qubes-status/",
        lambda s, e, path: seen.append((e, path)),
    )
    vm.watch_qdb_path("/qubes-status/")
    asyncio.run(vm.start())
    vm.qdb.write("/qubes-status/ready", "1")
    vm.qdb.write("/elsewhere", "x")
    assert seen == [("domain-qdb-change:/qubes-status/", "/qubes-status/ready")]


def test_qubesdb_is_gone_after_stop(host):
    vm = host.vm("work")

    async def scenario():
        await vm.start()
        assert vm.qdb is not None
        await vm.kill()

    asyncio.run(scenario())
    assert vm.qdb is None
