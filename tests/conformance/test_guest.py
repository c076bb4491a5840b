"""What only a real engine proves: the guest runs, and its volumes
behave as Qubes' do.

The template's init (scripts/guest/init) counts boots in the private
volume, reports ``QUBES-MARKER name=NAME boot=N`` (on the serial console
in a VM, in ``/rw/qubes-marker`` in a container) and runs
``/rw/config/rc.local``; the tests put probes there.
"""

from __future__ import annotations

import asyncio
import os

from conftest import wait_for

# Writes a file into the root, and says whether one was there already.
ROOT_PROBE = """\
if [ -e /root-probe ]; then echo present; else echo absent; fi \\
    > /rw/root-probe.result
echo written > /root-probe
"""
TEMPLATE_WRITE = "echo from-template > /etc/qubes-test-file\n"
TEMPLATE_READ = """\
cat /etc/qubes-test-file > /rw/template-file.result 2>&1 || \\
    echo missing > /rw/template-file.result
"""


def run(coroutine):
    return asyncio.run(coroutine)


def test_work_boots_and_its_marker_appears(real):
    vm = real.vm("work")

    async def scenario():
        await vm.start()
        assert vm.get_power_state() == "Running"
        assert real.vm("sys-net").get_power_state() == "Running"
        await real.booted("work", 1)

    run(scenario())


def test_kill_and_shutdown_bring_it_to_halted(real):
    vm = real.vm("work")

    async def scenario():
        await vm.start()
        await real.booted("work", 1)
        await vm.kill()
        assert vm.get_power_state() == "Halted"
        await vm.start()
        await real.booted("work", 2)
        await vm.shutdown(wait=True, timeout=60)
        assert vm.get_power_state() == "Halted"

    run(scenario())


def test_private_survives_a_restart_and_root_does_not(real):
    vm = real.vm("work")
    real.engine.prepare_private(vm)
    real.private_write("work", "config/rc.local", ROOT_PROBE)
    real.private_write("work", "kept-file", "mine\n")

    async def scenario():
        await vm.start()
        await real.booted("work", 1)
        await vm.shutdown(wait=True, timeout=60)
        await vm.start()
        await real.booted("work", 2)
        await vm.shutdown(wait=True, timeout=60)

    run(scenario())
    assert real.private_read("work", "kept-file") == "mine\n"
    assert real.private_read("work", "boot-count").strip() == "2"
    # Written to the root at the first boot, gone at the second.
    assert real.private_read("work", "root-probe.result").strip() == "absent"


def test_template_changes_reach_its_appvms_at_their_next_start(real):
    template = real.vm("tpl")
    work = real.vm("work")
    for name in ("tpl", "work"):
        real.engine.prepare_private(real.vm(name))
    real.private_write("tpl", "config/rc.local", TEMPLATE_WRITE)
    real.private_write("work", "config/rc.local", TEMPLATE_READ)

    async def scenario():
        await template.start()
        await real.booted("tpl", 1)
        await template.shutdown(wait=True, timeout=60)
        await work.start()
        await real.booted("work", 1)
        await work.shutdown(wait=True, timeout=60)

    run(scenario())
    result = real.private_read("work", "template-file.result")
    assert result.strip() == "from-template"


def test_guest_killed_outside_is_noticed_and_volumes_released(real):
    vm = real.vm("work")
    real.record("work")
    root = vm.volumes["root"]

    async def scenario():
        await vm.start()
        await real.booted("work", 1)
        assert root.exists()
        # As `virsh destroy` would: behind the store's back.
        real.engine.destroy_outside(vm)
        await wait_for(
            lambda: "domain-shutdown" in real.events_of("work"), timeout=30
        )

    run(scenario())
    assert real.events_of("work")[-2:] == ["domain-stopped", "domain-shutdown"]
    # The AppVM's root snapshot is released with the run.
    assert not root.exists()


def test_container_root_is_an_unprivileged_host_uid(real):
    if real.backend.name != "lxc":
        import pytest

        pytest.skip("only containers map their uids")
    from qubes.backends.lxc._xml import idmap_target

    vm = real.vm("work")

    async def scenario():
        await vm.start()
        await real.booted("work", 1)

    run(scenario())
    marker = os.path.join(vm.volumes["private"].path, "qubes-marker")
    owner = os.stat(marker).st_uid
    assert owner == idmap_target(vm.qid)
    assert owner != 0


def test_a_start_that_times_out_leaves_no_container_running(real, monkeypatch):
    import subprocess

    import pytest

    from qubes import exc

    if real.engine.name != "lxc-liblxc":
        pytest.skip("only liblxc starts its containers with lxc-start")
    from qubes.backends.lxc import liblxc

    real_run = subprocess.run
    started = []

    def too_slow(command, **kwargs):
        # lxc-start does start the container, but "too late".
        if command[0] != liblxc.LXC_START:
            return real_run(command, **kwargs)
        started.append(real_run(command, **kwargs).returncode)
        raise subprocess.TimeoutExpired(command, kwargs.get("timeout", 0))

    # The container must be stopped before its volumes are released
    # (released under it, it would die of that instead).
    from qubes.storage import Storage

    seen_at_release = []
    release = Storage.stop

    async def release_and_look(storage, *args):
        container = real.backend.container(storage.vm.name)
        seen_at_release.append(container.state)
        await release(storage, *args)

    monkeypatch.setattr(subprocess, "run", too_slow)
    monkeypatch.setattr(Storage, "stop", release_and_look)
    vm = real.vm("work")
    with pytest.raises(exc.QubesBackendError, match="did not reach RUNNING"):
        run(vm.start())
    assert started == [0]
    assert seen_at_release == ["STOPPED"]
    assert vm.get_power_state() == "Halted"
    assert not vm.volumes["root"].exists()
