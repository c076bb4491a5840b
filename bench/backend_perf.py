"""The backends' own cost: building domain XML, and starting a domain.

1. ``create_config`` for 1,000 AppVMs, per backend: the first call for
   each domain (cold: everything is built, the volume objects too) and
   a second call (warm: the domain did not change, its XML is reused),
   the median over several stores loaded afresh. Goal: at most 50 µs
   per domain. The kernel is installed as Qubes ships one, with its
   modules image.
2. Start to running through ``qubes`` (``await vm.start()``) against
   bare libvirt-python on the same test-driver connection
   (``defineXML`` + ``create`` of the same XML, for a twin domain, then
   ``destroy`` + ``undefine``), measured side by side, alternating,
   after a warm-up. Goal: ratio at most 1.10. ``qubes`` starts a
   transient domain (one ``createXML``); bare ``createXML`` of the same
   XML is timed in the same rounds too, so that the last columns show
   what the layer adds to that one call. A start through ``qubes`` also
   prepares the domain's volumes (the root's snapshot, the private
   volume's revision, an empty volatile volume), which bare libvirt
   does not; those steps are timed alone in each round (``storage``).
   The second case gives ``work`` volumes that need no preparation
   (root and private kept as they are, no volatile volume).

    python bench/backend_perf.py [--domains 1000] [--starts 400]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
import uuid

import lxml.etree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from store_scale import SAMPLE, make_store  # noqa: E402

import qubes  # noqa: E402
from qubes.backends import get_backend  # noqa: E402
from qubes.backends.simulated import NodeFile  # noqa: E402

CONFIG_GOAL_US = 50.0
START_GOAL = 1.10


def _store(tmp: str, count: int, backend: object) -> qubes.Qubes:
    path = os.path.join(tmp, "qubes.xml")
    make_store(SAMPLE, count, path)
    app = qubes.Qubes(path, backend=backend)
    app.pools["varlibqubes"].config["dir_path"] = os.path.join(tmp, "pool")
    kernels = os.path.join(tmp, "vm-kernels")
    app.pools["linux-kernel"].config["dir_path"] = kernels
    version = os.path.join(kernels, app.default_kernel)
    os.makedirs(version)
    for name in ("vmlinuz", "initramfs", "modules.img"):
        open(os.path.join(version, name), "wb").close()
    asyncio.run(_make_volumes(app))
    return app


async def _make_volumes(app: qubes.Qubes) -> None:
    """Empty sparse images for the domains that the start figures use."""
    for name in ("fedora-41", "sys-net", "work"):
        await app.domains[name].storage.create()


def _engine(tmp: str, name: str) -> object:
    node = NodeFile(os.path.join(tmp, f"node-{name}.xml"))
    node.before_open()
    return get_backend(name, uri=node.uri)


def _config_round(name: str, count: int) -> tuple[float, float]:
    """Cold and warm µs per domain, on a store loaded afresh."""
    with tempfile.TemporaryDirectory() as tmp:
        backend = _engine(tmp, name)
        app = _store(tmp, count, backend)
        vms = [vm for vm in app.domains if vm.name.startswith("app-")]
        figures = []
        for _ in range(2):
            gc.collect()
            start = time.perf_counter()
            for vm in vms:
                backend.create_config(vm)
            figures.append((time.perf_counter() - start) / len(vms) * 1e6)
        backend.close()
    return figures[0], figures[1]


def bench_config(count: int, rounds: int) -> None:
    print(
        f"create_config, {count} AppVMs, µs per domain, median of "
        f"{rounds} stores loaded afresh (goal {CONFIG_GOAL_US:g})"
    )
    print(
        f"{'backend':>8} {'cold':>8} {'ratio':>6} {'warm':>8} {'ratio':>6}"
        f" {'cold min':>8} {'max':>6}"
    )
    for name in ("xen", "kvm", "lxc"):
        figures = [_config_round(name, count) for _ in range(rounds)]
        colds = [cold for cold, _ in figures]
        cold = statistics.median(colds)
        warm = statistics.median(warm for _, warm in figures)
        print(
            f"{name:>8} {cold:>8.1f} {cold / CONFIG_GOAL_US:>6.2f} "
            f"{warm:>8.1f} {warm / CONFIG_GOAL_US:>6.2f} "
            f"{min(colds):>8.1f} {max(colds):>6.1f}"
        )


def _twin(xml: str) -> str:
    """The same domain XML under another name and UUID, for the bare
    side: so that its definitions do not touch the domain of ``qubes``."""
    root = lxml.etree.fromstring(xml.encode())
    root.find("name").text = "bare-twin"
    root.find("uuid").text = str(uuid.uuid4())
    return lxml.etree.tostring(root, encoding="unicode")


async def _pairs(app: qubes.Qubes, starts: int) -> list[tuple[float, ...]]:
    """(qubes, define+create, createXML, storage alone) per start."""
    conn = app.backend.connection.call("open", lambda c: c)
    vm = app.domains["work"]
    await app.domains["sys-net"].start()
    xml = _twin(vm.create_config_file())
    rows = []
    for number in range(starts):
        t0 = time.perf_counter()
        await vm.start()
        t1 = time.perf_counter()
        await vm.kill()
        t2 = time.perf_counter()
        dom = conn.defineXML(xml)
        dom.create()
        t3 = time.perf_counter()
        dom.destroy()
        dom.undefine()
        t4 = time.perf_counter()
        dom = conn.createXML(xml, 0)
        t5 = time.perf_counter()
        dom.destroy()
        t6a = time.perf_counter()
        await vm.storage.start()
        t6 = time.perf_counter()
        await vm.storage.stop()  # belongs to a kill: not timed
        if number >= starts // 10:  # the first tenth warms up
            rows.append((t1 - t0, t3 - t2, t5 - t4, t6 - t6a))
    return rows


def _nothing_to_prepare(app: qubes.Qubes) -> None:
    """Give 'work' volumes whose start needs no work: a root and a
    private volume kept as they are, no volatile volume. Its start then
    measures what the backend layer adds to libvirt's define+create."""
    vm = app.domains["work"]
    config = vm.volume_config
    config["root"].update(snap_on_start="False", save_on_stop="True")
    config["root"].pop("source", None)
    config["private"]["revisions_to_keep"] = "0"
    del config["volatile"]
    vm.storage.invalidate()
    asyncio.run(vm.storage.create())


#: (label, volumes prepared at start)
START_CASES = (("start", True), ("start, no volume work", False))


def _start_case(name: str, starts: int, volumes: bool):
    with tempfile.TemporaryDirectory() as tmp:
        backend = _engine(tmp, name)
        app = _store(tmp, 0, backend)
        if "hvm" not in backend.capabilities.virt_modes:
            app.domains["sys-net"].virt_mode = "pvh"
        if not volumes:
            _nothing_to_prepare(app)
        gc.collect()
        gc.disable()
        try:
            rows = asyncio.run(_pairs(app, starts))
        finally:
            gc.enable()
        backend.close()
    return rows


def _median_us(rows: list[tuple[float, ...]], column: int) -> float:
    return statistics.median(row[column] for row in rows) * 1e6


def _median_ratio(rows: list[tuple[float, ...]], column: int) -> float:
    return statistics.median(row[0] / row[column] for row in rows)


def bench_start(starts: int) -> None:
    print(
        f"\nstart to running, {starts} starts of 'work' per backend, "
        "test driver, µs; bare: defineXML + create of the same XML; "
        "createXML: that one call"
    )
    print(
        f"{'backend':>8} {'case':>21} {'qubes':>6} {'bare':>6} "
        f"{'ratio':>6} {'goal':>5} {'createXML':>9} {'ratio':>6} "
        f"{'storage':>7}"
    )
    for name in ("xen", "kvm", "lxc"):
        for case, volumes in START_CASES:
            rows = _start_case(name, starts, volumes)
            print(
                f"{name:>8} {case:>21} {_median_us(rows, 0):>6.0f} "
                f"{_median_us(rows, 1):>6.0f} {_median_ratio(rows, 1):>6.2f} "
                f"{START_GOAL:>5.2f} {_median_us(rows, 2):>9.0f} "
                f"{_median_ratio(rows, 2):>6.2f} {_median_us(rows, 3):>7.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=400)
    parser.add_argument(
        "--rounds", type=int, default=5, help="stores per create_config row"
    )
    args = parser.parse_args()
    bench_config(args.domains, args.rounds)
    bench_start(args.starts)


if __name__ == "__main__":
    main()
