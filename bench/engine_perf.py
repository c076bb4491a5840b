"""Real engines: what ``qubes`` adds to a start and a kill, and many
containers at once.

1. Start to guest ready, and kill to halted, through ``qubes`` (``await
   vm.start()``, then the guest's ready marker; ``await vm.kill()``)
   against bare libvirt on the same engine (``virsh define`` and
   ``virsh start`` of the same domain XML for a twin domain with volumes
   of its own, then its marker; ``virsh destroy``), side by side,
   alternating, after a warm-up of each. Goal: ratios at most 1.10.
2. 20 LXC containers started at once (``asyncio.gather``) until every
   one is ready, against one container. Goal: at most 3 times. The same
   on the bare engine (``lxc-start``, or libvirt's ``create``, from
   threads). On both sides every container has been started and
   stopped once before (a first start pays for things later ones do
   not), each timed round begins after :data:`REST` seconds without a
   start, and readiness is looked at every :data:`POLL` seconds. Beside
   the times, the CPU the whole host spent per container while the 20
   started (what bounds that figure: 20 starts share the host's CPUs);
   anything else running on the host at the time is counted in it.

Needs root, a running libvirtd (``scripts/libvirtd-ctl start``) and the
test template (``scripts/build-template``).

    python bench/engine_perf.py [--engines kvm-qemu,lxc-libvirt]
                                [--runs 5] [--many 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable

import lxml.etree

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests" / "conformance"))

from qubes.backends.lxc._xml import IDMAP_COUNT, idmap_target  # noqa: E402

import engines  # noqa: E402

RATIO_GOAL = 1.10
MANY_GOAL = 3.0
TIMEOUT = 120.0
#: seconds between two looks at the guests' readiness, on both sides
POLL = 0.002
#: seconds of rest before each timed round of many at once. The first
#: process moved into a cgroup after a pause waits for an RCU grace
#: period (about 8 ms here); moves right after another do not. Without
#: a rest, whether the single start pays it depends on how soon it
#: follows the stops before it, which differs between the two sides.
REST = 0.5
#: the bare containers' uid ranges are those of qids from here on
BARE_QIDS = 1000


def _host_cpu() -> float | None:
    """Seconds of CPU the whole host has used (every task, the kernel's
    included), from the root cgroup; None where it cannot be read."""
    try:
        text = pathlib.Path("/sys/fs/cgroup/cpuacct/cpuacct.usage").read_text()
        return int(text) / 1e9
    except (OSError, ValueError):
        pass
    try:
        stat = pathlib.Path("/sys/fs/cgroup/cpu.stat").read_text()
        for line in stat.splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
    except (OSError, ValueError):
        pass
    return None


def _per_start(before: float | None, count: int) -> float | None:
    """Host CPU seconds per start since *before* (from :func:`_host_cpu`)."""
    after = _host_cpu()
    if before is None or after is None:
        return None
    return (after - before) / count


def _cpu_text(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


async def _until(predicate, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the guest did not become ready")
        await asyncio.sleep(POLL)


def _virsh(uri: str, *args: str) -> None:
    subprocess.run(
        ["virsh", "-q", "-c", uri, *args], check=True, capture_output=True
    )


class Guest:
    """How to tell that a guest is ready, per engine."""

    def __init__(self, engine: engines.Engine) -> None:
        self.engine = engine

    def reset(self, name: str, private: str, log: str | None) -> None:
        """Forget the readiness of the previous boot."""
        if log is not None and os.path.exists(log):
            os.truncate(log, 0)
        ready = os.path.join(private, "qubes-ready")
        if os.path.isdir(private) and os.path.exists(ready):
            os.unlink(ready)

    def ready(self, name: str, private: str, log: str | None) -> bool:
        if log is not None:
            try:
                return f"QUBES-READY name={name}" in pathlib.Path(
                    log
                ).read_text(errors="replace")
            except FileNotFoundError:
                return False
        return os.path.exists(os.path.join(private, "qubes-ready"))


def _twin_xml(xml: str, name: str, paths: dict[str, str]) -> str:
    """*xml* for another domain: another name and UUID, other files."""
    root = lxml.etree.fromstring(xml.encode())
    old_name = root.find("name").text
    root.find("name").text = name
    root.find("uuid").text = str(uuid.uuid4())
    for node in root.iter("source", "log"):
        for attr in ("file", "dir"):
            old = node.get(attr)
            if old in paths:
                node.set(attr, paths[old])
    initenv = root.find("os/initenv")
    if initenv is not None:
        initenv.text = name
    cmdline = root.find("os/cmdline")
    if cmdline is not None:
        cmdline.text = cmdline.text.replace(
            f"qubes.name={old_name}", f"qubes.name={name}"
        )
    return lxml.etree.tostring(root, encoding="unicode")


def _twin_files(vm, engine, folder: pathlib.Path) -> dict[str, str]:
    """Copies of the volumes *vm* runs on, for the bare twin."""
    paths = {}
    # The kernel is shared; what the backend does without is not made.
    skip = {"kernel", *vm.app.backend.unused_volumes}
    for volume in vm.volumes.values():
        if volume.name in skip:
            continue
        path = volume.path
        copy = folder / f"twin-{volume.name}{pathlib.Path(path).suffix}"
        if volume.format == "dir":
            source = volume.source_path or path
            subprocess.run(["cp", "-a", source, str(copy)], check=True)
            owner = os.stat(path) if os.path.exists(path) else None
            if owner is not None:
                os.chown(copy, owner.st_uid, owner.st_gid)
        elif volume.format == "qcow2" and volume.source_path:
            subprocess.run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    volume.source_path,
                    "-F",
                    "qcow2",
                    str(copy),
                ],
                check=True,
            )
        else:
            subprocess.run(
                ["cp", "--sparse=always", path, str(copy)], check=True
            )
        paths[path] = str(copy)
    return paths


async def _pairs(engine, app, runs: int, folder: pathlib.Path):
    vm = app.domains[app.test_prefix + "work"]
    guest = Guest(engine)
    log_dir = getattr(engine, "log_dir", None)
    log = str(log_dir / f"guest-{vm.name}.log") if log_dir else None
    await vm.start()
    await _until(lambda: guest.ready(vm.name, vm.volumes["private"].path, log))
    twin_paths = _twin_files(vm, engine, folder)
    twin_name = app.test_prefix + "twin"
    twin_log = str(folder / "twin.log") if log else None
    if log:
        twin_paths[log] = twin_log
    xml = _twin_xml(vm.create_config_file(), twin_name, twin_paths)
    xml_file = folder / "twin.xml"
    xml_file.write_text(xml)
    twin_private = twin_paths[vm.volumes["private"].path]
    await vm.kill()
    uri = engine.uri
    figures = []
    for number in range(runs + 1):
        guest.reset(vm.name, vm.volumes["private"].path, log)
        t0 = time.monotonic()
        await vm.start()
        await _until(
            lambda: guest.ready(vm.name, vm.volumes["private"].path, log)
        )
        t1 = time.monotonic()
        await vm.kill()
        t2 = time.monotonic()
        guest.reset(twin_name, twin_private, twin_log)
        t3 = time.monotonic()
        _virsh(uri, "define", str(xml_file))
        _virsh(uri, "start", twin_name)
        await _until(lambda: guest.ready(twin_name, twin_private, twin_log))
        t4 = time.monotonic()
        _virsh(uri, "destroy", twin_name)
        t5 = time.monotonic()
        if number:  # the first of each is the warm-up
            figures.append((t1 - t0, t4 - t3, t2 - t1, t5 - t4))
    _virsh(uri, "undefine", twin_name)
    return figures


def _engine_here(name: str, what: str) -> engines.Engine | None:
    """The engine *name*, or None after saying why it cannot run here."""
    engine = engines.make_engine(name)
    reason = engine.unavailable()
    if reason:
        print(f"{what}: not run here: {reason}")
        return None
    return engine


def bench_engine(name: str, runs: int) -> None:
    engine = _engine_here(name, f"{name:>12}")
    if engine is None:
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = pathlib.Path(tmp)
        os.chmod(root, 0o711)
        app = engines.make_store(engine, root, f"b{os.getpid()}-")
        try:
            figures = asyncio.run(_pairs(engine, app, runs, root))
        finally:
            engine.teardown(app)
    for label, ours, bare in (
        ("start to ready", 0, 1),
        ("kill to halted", 2, 3),
    ):
        a = statistics.median(f[ours] for f in figures)
        b = statistics.median(f[bare] for f in figures)
        ratio = statistics.median(f[ours] / f[bare] for f in figures)
        print(
            f"{name:>12} {label:>15} {a:>8.3f} {b:>8.3f} {ratio:>6.2f} "
            f"{RATIO_GOAL:>5.2f}"
        )


async def _many(app, engine, count: int) -> tuple[float, float, float | None]:
    guest = Guest(engine)
    template = app.default_template
    vms = [
        app.add_new_vm(
            "AppVM",
            name=f"{app.test_prefix}m{i}",
            label="green",
            template=template,
        )
        for i in range(count)
    ]
    for vm in vms:
        vm.netvm = None
        await vm.create_on_disk()
    one = vms[0]
    ready = [
        lambda v=v: guest.ready(v.name, v.volumes["private"].path, None)
        for v in vms
    ]
    # Once each, untimed: the first start shifts the folders' owners.
    await asyncio.gather(*(vm.start() for vm in vms))
    await asyncio.gather(*(vm.kill() for vm in vms))
    for vm in vms:
        guest.reset(vm.name, vm.volumes["private"].path, None)
    await asyncio.sleep(REST)
    t0 = time.monotonic()
    await one.start()
    await _until(ready[0])
    single = time.monotonic() - t0
    await one.kill()
    guest.reset(one.name, one.volumes["private"].path, None)
    await asyncio.sleep(REST)
    cpu0 = _host_cpu()
    t0 = time.monotonic()
    await asyncio.gather(*(vm.start() for vm in vms))
    await _until(lambda: all(r() for r in ready))
    together = time.monotonic() - t0
    cpu = _per_start(cpu0, count)
    await asyncio.gather(*(vm.kill() for vm in vms))
    return single, together, cpu


def _bare_container(name: str, folder: pathlib.Path, index: int):
    """A container of the test template, made directly on the engine:
    (start, stop, remove, private folder) for the bare side. Like the
    domains qubes starts, it has a user namespace (a uid range of its
    own) and the private folder belongs to its root."""
    root, private = folder / f"r{index}", folder / f"p{index}"
    subprocess.run(
        ["cp", "-a", str(engines.CACHE / "template" / "rootfs"), str(root)],
        check=True,
    )
    private.mkdir()
    # Ranges past those of the store's domains (qids from 1).
    target = idmap_target(BARE_QIDS + index)
    os.chown(private, target, target)
    label = f"bare{index}-{os.getpid()}"
    if name == "lxc-libvirt":
        return _bare_libvirt(label, root, private, target)
    return _bare_liblxc(label, folder / "lxcpath", root, private, target)


def _bare_libvirt(label, root, private, target):
    import libvirt

    conn = libvirt.open("lxc:///system")
    ids = f"start='0' target='{target}' count='{IDMAP_COUNT}'"
    dom = conn.defineXML(
        "<domain type='lxc'><name>" + label + "</name>"
        "<memory unit='MiB'>256</memory><vcpu>1</vcpu><os>"
        "<type arch='x86_64'>exe</type><init>/sbin/init</init>"
        f"<initenv name='QUBES_NAME'>{label}</initenv></os>"
        f"<idmap><uid {ids}/><gid {ids}/></idmap>"
        "<features><privnet/></features><devices>"
        f"<filesystem type='mount'><source dir='{root}'/>"
        "<target dir='/'/></filesystem>"
        f"<filesystem type='mount'><source dir='{private}'/>"
        "<target dir='/rw'/></filesystem><console type='pty'/>"
        "</devices></domain>"
    )
    return dom.create, dom.destroy, dom.undefine, private


def _bare_liblxc(label, lxcpath, root, private, target):
    import _lxc
    import lxc

    container = lxc.Container(label, str(lxcpath))
    lxcpath.mkdir(exist_ok=True)
    for key, value in (
        ("lxc.rootfs.path", str(root)),
        ("lxc.uts.name", label),
        ("lxc.init.cmd", "/sbin/init"),
        ("lxc.net.0.type", "empty"),
        ("lxc.mount.auto", "proc:mixed sys:ro cgroup:mixed"),
        ("lxc.autodev", "1"),
        ("lxc.tty.max", "0"),
        ("lxc.pty.max", "16"),
    ):
        container.set_config_item(key, value)
    # /run and /tmp as qubes' liblxc configuration mounts them.
    for key, value in (
        ("lxc.mount.entry", f"{private} rw none bind,create=dir 0 0"),
        ("lxc.mount.entry", "tmpfs run tmpfs rw,create=dir 0 0"),
        ("lxc.mount.entry", "tmpfs tmp tmpfs rw,create=dir 0 0"),
        ("lxc.environment", f"QUBES_NAME={label}"),
        ("lxc.idmap", f"u 0 {target} {IDMAP_COUNT}"),
        ("lxc.idmap", f"g 0 {target} {IDMAP_COUNT}"),
    ):
        _lxc.Container.set_config_item(container, key, value)
    container.save_config()

    def start() -> None:
        # As qubes starts them: the binding would fork this process.
        subprocess.run(
            ["lxc-start", "-n", label, "-P", str(lxcpath)], check=True
        )

    return start, container.stop, lambda: None, private


def _wait_ready(privates: list[pathlib.Path]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not all((p / "qubes-ready").exists() for p in privates):
        if time.monotonic() > deadline:
            raise TimeoutError("bare containers did not start")
        time.sleep(POLL)


def _bare_round(made: list) -> tuple[float, float | None]:
    """Start the containers of *made* at once, one thread each: seconds
    until every one is ready, and host CPU seconds per container. They
    are stopped after."""
    for _, _, _, private in made:
        (private / "qubes-ready").unlink(missing_ok=True)
    time.sleep(REST)
    cpu0 = _host_cpu()
    t0 = time.monotonic()
    _in_threads([start for start, _, _, _ in made])
    _wait_ready([private for _, _, _, private in made])
    seconds = time.monotonic() - t0
    cpu = _per_start(cpu0, len(made))
    _in_threads([stop for _, stop, _, _ in made])
    return seconds, cpu


def _in_threads(calls: list[Callable[[], object]]) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def bench_bare_many(count: int, name: str) -> None:
    """The same on the bare engine, threads starting the containers."""
    base = (
        engines.SHARED_MOUNTS
        if name == "lxc-libvirt"
        else pathlib.Path("/var/tmp")
    )
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        folder = pathlib.Path(tmp)
        os.chmod(folder, 0o711)
        made = [_bare_container(name, folder, i) for i in range(count)]
        try:
            _bare_round(made)  # untimed, as on the qubes side
            single, _ = _bare_round(made[:1])
            together, cpu = _bare_round(made)
        finally:
            for _, _, remove, _ in made:
                remove()
    print(
        f"{name + ' bare':>16} {single:>8.3f} {together:>10.3f} "
        f"{together / single:>6.2f} {MANY_GOAL:>5.2f} {_cpu_text(cpu):>10}"
    )


def bench_many(count: int, name: str) -> None:
    engine = _engine_here(name, f"{count} containers on {name}")
    if engine is None:
        return
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        root = pathlib.Path(tmp)
        app = engines.make_store(engine, root, f"n{os.getpid()}-")
        try:
            single, together, cpu = asyncio.run(_many(app, engine, count))
        finally:
            engine.teardown(app)
    print(
        f"{name:>16} {single:>8.3f} {together:>10.3f} "
        f"{together / single:>6.2f} {MANY_GOAL:>5.2f} {_cpu_text(cpu):>10}"
    )
    bench_bare_many(count, name)


#: engines that virsh drives, and the LXC engines
VIRSH_ENGINES = ("kvm-qemu", "lxc-libvirt")
MANY_ENGINES = ("lxc-libvirt", "lxc-liblxc")


def _names(known: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"{', '.join(unknown)}: not one of {', '.join(known)}"
            )
        return names

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engines",
        type=_names(VIRSH_ENGINES),
        default="kvm-qemu,lxc-libvirt",
        help="engines for the comparison with virsh (may be empty)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--many", type=int, default=20)
    parser.add_argument(
        "--many-engines",
        type=_names(MANY_ENGINES),
        default="lxc-libvirt,lxc-liblxc",
        help="LXC engines for the many-at-once figure (may be empty)",
    )
    args = parser.parse_args()
    print("through qubes against bare virsh, median s")
    print(
        f"{'engine':>12} {'':>15} {'qubes':>8} {'virsh':>8} {'ratio':>6} "
        f"{'goal':>5}"
    )
    for name in args.engines:
        bench_engine(name, args.runs)
    if args.many:
        print(f"\n{args.many} LXC containers at once, start to ready, s")
        print(
            f"{'engine':>16} {'one':>8} {'at once':>10} {'ratio':>6} "
            f"{'goal':>5} {'cpu/ct ms':>10}"
        )
        for name in args.many_engines:
            bench_many(args.many, name)


if __name__ == "__main__":
    main()
