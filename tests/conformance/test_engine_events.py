"""What the engine reports on its own: a domain stopped from outside."""

from __future__ import annotations

import asyncio

from conftest import wait_for


def test_domain_destroyed_outside_is_noticed(host):
    vm = host.vm("work")
    host.record("work")

    async def scenario():
        await vm.start()
        # As `virsh destroy work` would: behind the store's back.
        host.engine.destroy_outside(vm)
        await wait_for(lambda: "domain-shutdown" in host.events_of("work"))

    asyncio.run(scenario())
    tail = host.events_of("work")[-2:]
    assert tail == ["domain-stopped", "domain-shutdown"]
    assert vm.qdb is None


def test_stop_is_handled_once_when_we_kill(host):
    vm = host.vm("work")
    host.record("work")

    async def scenario():
        await vm.start()
        await vm.kill()
        await asyncio.sleep(0.2)  # let the engine's own event arrive

    asyncio.run(scenario())
    assert host.events_of("work").count("domain-stopped") == 1


def test_dispvm_with_auto_cleanup_is_removed_when_it_stops(host):
    app = host.app
    disp = app.add_new_vm(
        "DispVM",
        name=host.prefix + "disp7",
        label="red",
        dispid=7,
        auto_cleanup=True,
    )
    app.save()

    async def scenario():
        await disp.start()
        await disp.kill()

    asyncio.run(scenario())
    assert host.prefix + "disp7" not in app.domains
    reloaded = type(app)(app.path, backend=app.backend)
    assert host.prefix + "disp7" not in reloaded.domains


def test_dispvm_without_auto_cleanup_stays(host):
    app = host.app
    disp = app.add_new_vm(
        "DispVM", name=host.prefix + "disp8", label="red", dispid=8
    )

    async def scenario():
        await disp.start()
        await disp.kill()

    asyncio.run(scenario())
    assert host.prefix + "disp8" in app.domains
