"""Start, stop, pause: states and the order of events, on every engine."""

from __future__ import annotations

import asyncio
import os

import libvirt
import lxml.etree
import pytest

from qubes import exc


def run(coroutine):
    return asyncio.run(coroutine)


def test_start_brings_the_netvm_up_first(host):
    host.record("work", "sys-net")
    run(host.vm("work").start())
    assert host.vm("work").get_power_state() == "Running"
    assert host.vm("sys-net").get_power_state() == "Running"
    first_net = host.events.index(("sys-net", "domain-start"))
    first_work = host.events.index(("work", "domain-pre-start"))
    assert first_net < first_work


def test_start_fires_pre_start_spawn_start_in_order(host):
    host.record("work")
    run(host.vm("work").start())
    events = [
        e
        for e in host.events_of("work")
        if e in ("domain-pre-start", "domain-spawn", "domain-start")
    ]
    assert events == ["domain-pre-start", "domain-spawn", "domain-start"]


def test_start_defines_the_domain_in_the_engine(host):
    vm = host.vm("work")
    assert not host.engine.defined(vm)
    run(vm.start())
    assert host.engine.defined(vm)
    if host.engine.libvirt:
        dom = vm.libvirt_domain
        assert dom.UUIDString() == str(vm.uuid)
        assert dom.name() == vm.name


def test_running_domain_has_a_runtime_id_and_stats(host):
    vm = host.vm("work")
    assert vm.xid == -1
    run(vm.start())
    assert vm.xid >= 0
    stats = host.backend.get_stats(vm)
    assert stats.vcpus == vm.vcpus
    # What a guest has now depends on the engine (a container's is what
    # it uses); what it may have is what was asked for.
    assert 0 < stats.memory_kib <= stats.max_memory_kib
    assert stats.max_memory_kib == max(vm.memory, vm.maxmem) * 1024


def test_get_uuid_is_the_domains_uuid(host):
    vm = host.vm("work")
    run(vm.start())
    assert host.backend.get_uuid(vm) == vm.uuid


def test_starting_a_running_domain_is_refused(host):
    vm = host.vm("work")
    run(vm.start())
    with pytest.raises(exc.QubesVMAlreadyRunningError):
        run(vm.start())
    assert vm.get_power_state() == "Running"


def test_kill_halts_and_fires_stopped_then_shutdown(host):
    vm = host.vm("work")
    run(vm.start())
    host.record("work")
    run(vm.kill())
    assert vm.get_power_state() == "Halted"
    assert host.events_of("work") == ["domain-stopped", "domain-shutdown"]


def test_killing_a_halted_domain_raises_not_started(host):
    with pytest.raises(exc.QubesVMNotStartedError):
        run(host.vm("work").kill())


async def _started(host, name):
    # A guest asked to shut down before its init listens would not hear
    # it; on a real engine, wait for its boot.
    await host.vm(name).start()
    if host.engine.real:
        await host.booted(name, 1)


def test_shutdown_wait_halts(host):
    vm = host.vm("work")
    run(_started(host, "work"))
    host.record("work")
    run(vm.shutdown(wait=True, timeout=60))
    assert vm.get_power_state() == "Halted"
    assert host.events_of("work")[0] == "domain-pre-shutdown"
    assert host.events_of("work")[-2:] == ["domain-stopped", "domain-shutdown"]


def test_shutting_down_a_halted_domain_raises_not_started(host):
    with pytest.raises(exc.QubesVMNotStartedError):
        run(host.vm("work").shutdown())


def test_netvm_refuses_shutdown_under_running_clients(host):
    run(_started(host, "work"))
    with pytest.raises(exc.QubesVMError, match="work"):
        run(host.vm("sys-net").shutdown(wait=True))
    assert host.vm("sys-net").get_power_state() == "Running"
    if host.engine.real:
        run(host.booted("sys-net", 1))
    run(host.vm("sys-net").shutdown(force=True, wait=True, timeout=60))
    assert host.vm("sys-net").get_power_state() == "Halted"


def test_pause_and_unpause(host):
    vm = host.vm("work")
    run(vm.start())
    host.record("work")
    run(vm.pause())
    assert vm.get_power_state() == "Paused"
    run(vm.unpause())
    assert vm.get_power_state() == "Running"
    assert host.events_of("work") == ["domain-paused", "domain-unpaused"]


def test_pausing_a_halted_domain_is_refused(host):
    with pytest.raises(exc.QubesVMNotRunningError):
        run(host.vm("work").pause())


def test_unpausing_a_running_domain_is_refused(host):
    vm = host.vm("work")
    run(vm.start())
    with pytest.raises(exc.QubesVMNotPausedError):
        run(vm.unpause())


def test_a_restart_works(host):
    vm = host.vm("work")
    for _ in range(3):
        run(vm.start())
        assert vm.is_running()
        run(vm.kill())
        assert vm.is_halted()


def test_failed_start_leaves_nothing_behind(host):
    vm = host.vm("work")
    host.record("work")

    def refuse(subject, event, **kwargs):
        raise RuntimeError("spawn handler refuses")

    vm.add_handler("domain-spawn", refuse)
    with pytest.raises(RuntimeError):
        run(vm.start())
    assert vm.get_power_state() == "Halted"
    assert not host.engine.defined(vm)
    assert vm.qdb is None
    assert "domain-start-failed" in host.events_of("work")
    assert "domain-start" not in host.events_of("work")


def test_a_domain_the_backend_cannot_run_leaves_its_netvm_halted(host):
    vm = host.vm("work")
    modes = host.backend.capabilities.virt_modes
    missing = [m for m in ("pv", "pvh", "hvm") if m not in modes]
    if not missing:
        pytest.skip("this backend runs every virt mode")
    vm.virt_mode = missing[0]
    with pytest.raises(exc.QubesUnsupportedError, match=missing[0]):
        run(vm.start())
    assert vm.netvm.is_halted()
    assert not host.engine.defined(vm.netvm)


def test_pre_start_veto_defines_nothing(host):
    vm = host.vm("work")

    def veto(subject, event, **kwargs):
        raise exc.QubesVMError(subject, "not now")

    vm.add_handler("domain-pre-start", veto)
    with pytest.raises(exc.QubesVMError, match="not now"):
        run(vm.start())
    assert not host.engine.defined(vm)


def _missing_kernel(vm):
    vm.kernel = "9.9.9-missing"
    vm.volume_config["kernel"]["vid"] = "9.9.9-missing"
    vm.storage.invalidate()


def test_missing_kernel_fails_the_start_and_defines_nothing(host):
    vm = host.vm("work")
    if "kernel" not in vm.volume_config:
        pytest.skip("domains on this engine have no kernel volume")
    if "kernel" in host.backend.unused_volumes:
        pytest.skip("containers run on the host's kernel")
    _missing_kernel(vm)
    with pytest.raises(exc.QubesStorageError, match=r"9\.9\.9-missing"):
        run(vm.start())
    assert not host.engine.defined(vm)
    assert vm.get_power_state() == "Halted"


def test_a_container_does_without_its_volatile_and_kernel_volumes(host):
    vm = host.vm("work")
    if not host.backend.unused_volumes:
        pytest.skip("domains of this backend use every volume they have")
    if "kernel" in vm.volume_config:
        _missing_kernel(vm)
    run(vm.start())
    assert vm.is_running()
    volatile = vm.volumes.get("volatile")
    if volatile is not None and not host.backend.capabilities.simulated:
        assert not os.path.exists(volatile.path)


def test_transient_while_starting(host):
    vm = host.vm("work")
    seen = []
    vm.add_handler(
        "domain-spawn", lambda s, e, **k: seen.append(s.get_power_state())
    )
    run(vm.start())
    assert seen == ["Transient"]


def _libvirt_only(host):
    if not host.engine.libvirt:
        pytest.skip("transient domains are libvirt's")


def test_a_stopped_domain_leaves_no_definition(host):
    # The engine knows the domain while it runs: killed, or after a
    # failed start (above), it is not defined at all.
    _libvirt_only(host)
    vm = host.vm("work")

    async def scenario():
        await vm.start()
        assert host.engine.defined(vm)
        await vm.kill()
        assert not host.engine.defined(vm)
        await vm.start()
        assert vm.get_power_state() == "Running"

    run(scenario())


def test_a_change_reaches_the_engine_at_the_next_start(host):
    _libvirt_only(host)
    vm = host.vm("work")

    async def scenario():
        await vm.start()
        await vm.kill()
        vm.vcpus = 1
        await vm.start()

    run(scenario())
    xml = lxml.etree.fromstring(vm.libvirt_domain.XMLDesc(0))
    assert xml.findtext("vcpu") == "1"


def _vcpus_of(dom):
    return lxml.etree.fromstring(dom.XMLDesc(0)).findtext("vcpu")


def test_a_definition_made_outside_is_replaced_at_start(host):
    _libvirt_only(host)
    vm = host.vm("work")
    # As `virsh define` would: a definition of the same domain, edited.
    edited = lxml.etree.fromstring(vm.create_config_file())
    edited.find("vcpu").text = "1"
    conn = host.backend.connection.call("open", lambda c: c)
    conn.defineXML(lxml.etree.tostring(edited, encoding="unicode"))

    async def scenario():
        await vm.start()
        dom = vm.libvirt_domain
        assert _vcpus_of(dom) == str(vm.vcpus)
        assert not dom.isPersistent()
        await vm.kill()

    run(scenario())
    assert not host.engine.defined(vm)
    assert vm.get_power_state() == "Halted"


def test_an_outside_definition_the_engine_keeps_does_not_fail_the_start(
    host, monkeypatch, caplog
):
    # Where the engine refuses to undefine the running domain, it runs
    # all the same, from the store's XML; the definition stays.
    _libvirt_only(host)
    if host.engine.real:
        pytest.skip("the refusal is staged on the test driver")
    vm = host.vm("work")
    conn = host.backend.connection.call("open", lambda c: c)
    conn.defineXML(vm.create_config_file())

    def refuse(dom, *args):
        raise libvirt.libvirtError("undefine refused")

    monkeypatch.setattr(libvirt.virDomain, "undefine", refuse)
    monkeypatch.setattr(libvirt.virDomain, "undefineFlags", refuse)
    run(vm.start())
    assert vm.get_power_state() == "Running"
    assert vm.libvirt_domain.isPersistent()
    assert "the definition made outside stays" in caplog.text


def test_a_domain_the_backend_stopped_is_halted_without_asking(host):
    # On an engine no other process uses, the backend knows the domain
    # it killed or undefined is halted; elsewhere it asks the engine.
    _libvirt_only(host)
    vm = host.vm("work")
    backend = host.backend
    asked = []
    original = backend.libvirt_domain

    def counted(domain):
        asked.append(domain.name)
        return original(domain)

    async def scenario():
        await vm.start()
        await vm.kill()
        backend.libvirt_domain = counted
        assert vm.get_power_state() == "Halted"
        await backend.undefine(vm)
        assert vm.get_power_state() == "Halted"
        assert bool(asked) == backend.shared_between_processes
        await vm.start()
        assert vm.get_power_state() == "Running"

    run(scenario())


@pytest.mark.parametrize(
    ("step", "error"),
    [
        ("pause", exc.QubesVMNotRunningError),
        ("shutdown", exc.QubesVMNotRunningError),
        ("kill", exc.QubesVMNotStartedError),
        ("unpause", exc.QubesVMNotPausedError),
    ],
)
def test_a_domain_stopped_between_look_and_act_is_a_named_error(
    host, step, error
):
    # Another process stopped it after this one looked: the engine
    # holds a definition that does not run, and the call is refused.
    _libvirt_only(host)
    vm = host.vm("work")
    conn = host.backend.connection.call("open", lambda c: c)
    conn.defineXML(vm.create_config_file())
    with pytest.raises(error, match="work"):
        run(getattr(host.backend, step)(vm))
    assert vm.get_power_state() == "Halted"
