"""The engines the conformance suite runs on, and how to set each up.

An engine gives the suite a backend, a store whose pools suit it, and,
for real engines, a way to see into a guest: when it is ready, and the
files of its private volume. Real engines use the template that
``scripts/build-template`` builds (a busybox root and a Debian kernel);
the guest's init is the contract described in ``scripts/guest/init``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import pathlib
import re
import shutil
import signal
import subprocess
import uuid
from typing import Any

import libvirt

import qubes
import qubes.backends
from qubes.backends.simulated import NodeFile
from qubes.storage import make_pool

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("QUBES_TEST_CACHE", ROOT / "cache"))
#: mounts made below this folder reach libvirtd's mount namespace (see
#: scripts/libvirtd-ctl)
SHARED_MOUNTS = pathlib.Path("/run/qubes-tests-mounts")
#: where liblxc tests keep their pools (searchable by mapped uids)
LIBLXC_ROOT = pathlib.Path("/var/tmp/qubes-tests-liblxc")
TEST_KERNEL = "6.1.0-test"
MIB = 1024 * 1024
#: a private volume small enough to format quickly under emulation
PRIVATE_SIZE = 64 * MIB
_serial = itertools.count(1)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


class Engine:
    """An engine of the test driver: nothing runs, volumes are real."""

    backend_name = ""
    real = False
    #: give domains names of their own in each test (real engines keep
    #: definitions between tests)
    unique_names = False

    def __init__(self, name: str, backend_name: str) -> None:
        self.name = name
        self.backend_name = backend_name

    def host_unavailable(self) -> str | None:
        """Why this host cannot run the env at all, before its tox env
        is made (what the env installs itself does not count)."""
        return self.unavailable()

    def unavailable(self) -> str | None:
        """Why this engine cannot run here, or None."""
        return None

    def backend(self, root: pathlib.Path) -> Any:
        # A node file of its own: the test driver's private state, so
        # that tests do not see each other's domains. Built directly, not
        # through the backend choice: an engine with real volumes, not
        # the simulated host.
        node = root / "engine-node.xml"
        NodeFile(str(node)).before_open()
        return qubes.backends.get_backend(
            self.backend_name, uri=f"test://{node}"
        )

    def pools(self, app: Any, root: pathlib.Path) -> None:
        """Set the store's pools up (the file pool beside qubes.xml)."""
        kernels = root / "vm-kernels" / TEST_KERNEL
        kernels.mkdir(parents=True)
        for name in ("vmlinuz", "initramfs"):
            (kernels / name).write_bytes(b"")
        app.default_kernel = TEST_KERNEL

    def import_template(self, template: Any) -> None:
        """Fill the template's root (nothing to boot here)."""

    def teardown(self, app: Any) -> None:
        """Release what the test left on the engine."""

    #: whether the engine keeps libvirt definitions
    libvirt = True

    def destroy_outside(self, vm: Any) -> None:
        """Stop *vm* behind the store's back, as ``virsh destroy``."""
        vm.libvirt_domain.destroy()

    def defined(self, vm: Any) -> bool:
        """Whether the engine holds a definition of *vm*."""
        return vm.libvirt_domain is not None


class RealEngine(Engine):
    """An engine behind libvirtd that really runs guests."""

    real = True
    unique_names = True
    uri = ""

    def unavailable(self) -> str | None:
        if os.geteuid() != 0:
            return "real engines need root"
        missing = self._missing_cache()
        if missing:
            return (
                f"the test template is not built ({missing} is missing): "
                "run scripts/build-template"
            )
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as err:
            return (
                f"{self.uri} does not answer ({err.get_error_message()}): "
                "start libvirtd with scripts/libvirtd-ctl start"
            )
        conn.close()
        return None

    def _missing_cache(self) -> str | None:
        for path in self.cache_files():
            if not path.exists():
                return str(path)
        return None

    def cache_files(self) -> list[pathlib.Path]:
        return [CACHE / "template" / "VERSION"]

    @staticmethod
    def kernel_version() -> str:
        return (CACHE / "template" / "VERSION").read_text().strip()

    def teardown(self, app: Any) -> None:
        """Kill, undefine and unplug everything the test defined."""
        backend = app.backend

        async def clean() -> None:
            for vm in list(app.domains):
                if not vm.qid:
                    continue
                if vm.is_running():
                    await vm.kill()
                await vm.remove_from_disk()

        run(clean())
        conn = backend.connection.call("open", lambda c: c)
        prefix = f"qubes-{app.test_prefix}"
        for network in conn.listAllNetworks():
            if network.name().startswith(prefix):
                if network.isActive():
                    network.destroy()
                network.undefine()


class QemuEngine(RealEngine):
    """The KVM backend on QEMU (software emulation here)."""

    uri = "qemu:///system"

    def cache_files(self) -> list[pathlib.Path]:
        version = CACHE / "template" / "VERSION"
        files = [version, CACHE / "template" / "root.img"]
        if version.exists():
            kernel = CACHE / "vm-kernels" / self.kernel_version()
            files += [kernel / "vmlinuz", kernel / "initramfs"]
        return files

    def backend(self, root: pathlib.Path) -> Any:
        self.log_dir = root / "log"
        self.log_dir.mkdir()
        # No uplink network: this machine's guests reach nothing outside.
        return qubes.backends.get_backend(
            "kvm", uri=self.uri, uplink="", log_dir=str(self.log_dir)
        )

    def pools(self, app: Any, root: pathlib.Path) -> None:
        """Roots as qcow2 overlays, the rest as raw images (which the
        tests read with debugfs), kernels from the built cache."""
        app.pools["images"] = make_pool(
            "images", {"driver": "qcow2", "dir_path": str(root / "images")}
        )
        app.pools["files"] = make_pool(
            "files", {"driver": "file", "dir_path": str(root / "files")}
        )
        app.pools["linux-kernel"].config["dir_path"] = str(CACHE / "vm-kernels")
        app.default_pool = "files"
        app.default_pool_root = "images"
        app.default_kernel = self.kernel_version()

    def import_template(self, template: Any) -> None:
        template.volumes["root"].import_data(
            str(CACHE / "template" / "root.img")
        )

    def console(self, vm: Any) -> str:
        path = self.log_dir / f"guest-{vm.name}.log"
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def private_read(self, vm: Any, path: str) -> str | None:
        """A file of the (halted) domain's private volume, or None."""
        image = vm.volumes["private"].path
        done = subprocess.run(
            ["debugfs", "-R", f"cat /{path}", image],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or "File not found" in done.stderr:
            return None
        return done.stdout

    def private_write(self, vm: Any, path: str, text: str) -> None:
        """Write a file into the (halted) domain's private volume."""
        image = vm.volumes["private"].path
        source = pathlib.Path(image).with_suffix(".upload")
        source.write_text(text)
        folder = os.path.dirname(path)
        commands = [f"mkdir /{folder}"] if folder else []
        commands += [f"rm /{path}", f"write {source} /{path}"]
        for command in commands:
            subprocess.run(
                ["debugfs", "-w", "-R", command, image],
                capture_output=True,
                check=False,
            )
        source.unlink()

    def prepare_private(self, vm: Any) -> None:
        """Format the private volume ext4, as the guest would at its
        first boot, so that files can be put there before."""
        image = vm.volumes["private"].path
        subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", image], check=True)


class LibvirtLxcEngine(RealEngine):
    """The LXC backend on libvirt's LXC driver."""

    uri = "lxc:///system"

    def cache_files(self) -> list[pathlib.Path]:
        return [CACHE / "template" / "rootfs" / "sbin" / "init"]

    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason is None and not _is_shared_mount(SHARED_MOUNTS):
            return (
                f"{SHARED_MOUNTS} is not a shared mount: libvirtd would "
                "not see the overlays; start it with scripts/libvirtd-ctl"
            )
        return reason

    def backend(self, root: pathlib.Path) -> Any:
        return qubes.backends.get_backend("lxc", uri=self.uri)

    def pools(self, app: Any, root: pathlib.Path) -> None:
        """Folders below the shared mount point, where libvirtd sees
        the overlays."""
        self.folder = SHARED_MOUNTS / f"test-{uuid.uuid4().hex[:12]}"
        app.pools["dirs"] = make_pool(
            "dirs", {"driver": "dir", "dir_path": str(self.folder)}
        )
        app.default_pool = "dirs"
        app.default_pool_kernel = "linux-kernel"
        app.default_kernel = None

    def import_template(self, template: Any) -> None:
        template.volumes["root"].import_data(str(CACHE / "template" / "rootfs"))

    def console(self, vm: Any) -> str:
        """A container's console is its private volume: the marker and,
        once rc.local ran, the ready line."""
        return "\n".join(
            self.private_read(vm, name) or ""
            for name in ("qubes-marker", "qubes-ready")
        )

    def private_read(self, vm: Any, path: str) -> str | None:
        try:
            return (pathlib.Path(vm.volumes["private"].path) / path).read_text()
        except FileNotFoundError:
            return None

    def private_write(self, vm: Any, path: str, text: str) -> None:
        target = pathlib.Path(vm.volumes["private"].path) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        owner = os.stat(vm.volumes["private"].path)
        for made in (target.parent, target):
            os.chown(made, owner.st_uid, owner.st_gid)

    def prepare_private(self, vm: Any) -> None:
        """Nothing: a folder needs no formatting."""

    def teardown(self, app: Any) -> None:
        super().teardown(app)
        shutil.rmtree(self.folder, ignore_errors=True)


class LiblxcEngine(LibvirtLxcEngine):
    """The LXC backend on liblxc: no daemon; containers start from this
    process, in its mount namespace."""

    uri = ""
    libvirt = False

    def destroy_outside(self, vm: Any) -> None:
        """The container's init killed, as if it died."""
        os.kill(vm.xid, signal.SIGKILL)

    def defined(self, vm: Any) -> bool:
        """Whether liblxc holds a configuration of *vm*."""
        return bool(vm.app.backend.container(vm.name).defined)

    def unavailable(self) -> str | None:
        try:
            import lxc  # noqa: F401
        except ImportError:
            return "python-lxc is not installed (pip install lxc)"
        return self.host_unavailable()

    def host_unavailable(self) -> str | None:
        """Why this host cannot run the env, whose own install builds
        python-lxc against liblxc's headers."""
        if os.geteuid() != 0:
            return "liblxc containers here need root"
        if not os.path.exists("/usr/include/lxc/lxccontainer.h"):
            return "liblxc's headers are not installed (apt install lxc-dev)"
        missing = self._missing_cache()
        if missing:
            return (
                f"the test template is not built ({missing} is missing): "
                "run scripts/build-template"
            )
        return None

    def backend(self, root: pathlib.Path) -> Any:
        # Every folder above a container's root and its configuration
        # must be searchable by its mapped root, which pytest's private
        # tmp_path is not.
        LIBLXC_ROOT.mkdir(mode=0o711, exist_ok=True)
        LIBLXC_ROOT.chmod(0o711)
        self.folder = LIBLXC_ROOT / f"test-{uuid.uuid4().hex[:12]}"
        self.folder.mkdir(mode=0o711)
        lxcpath = self.folder / "lxcpath"
        return qubes.backends.get_backend("lxc", uri=f"liblxc://{lxcpath}")

    def pools(self, app: Any, root: pathlib.Path) -> None:
        """Folders in the searchable place made by :meth:`backend`."""
        app.pools["dirs"] = make_pool(
            "dirs", {"driver": "dir", "dir_path": str(self.folder / "dirs")}
        )
        app.default_pool = "dirs"
        app.default_kernel = None

    def teardown(self, app: Any) -> None:
        async def clean() -> None:
            for vm in list(app.domains):
                if vm.qid:
                    if vm.is_running():
                        await vm.kill()
                    await vm.remove_from_disk()

        run(clean())
        for name in os.listdir("/sys/class/net"):
            if name.startswith("qbr") and _made_by(app, name):
                subprocess.run(["ip", "link", "del", name], check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def _made_by(app: Any, bridge: str) -> bool:
    from qubes.backends._base import bridge_name

    prefix = f"qubes-{app.test_prefix}"
    return any(
        bridge_name(f"{prefix}{vm.name[len(app.test_prefix) :]}") == bridge
        for vm in app.domains
    )


def make_store(engine: Engine, root: pathlib.Path, prefix: str = "") -> Any:
    """A store on *engine* in *root*: a template ``tpl`` with the test
    template's root, a netvm ``sys-net``, a disposable template ``dvm``
    and an AppVM ``work``, their names with *prefix*; volumes made."""
    path = root / "qubes.xml"
    qubes.Qubes.create_empty_store(str(path))
    app = qubes.Qubes(str(path), backend=engine.backend(root))
    app.test_prefix = prefix
    engine.pools(app, root)
    # Small and fixed: guests run under emulation, and fixed memory
    # needs no balloon.
    template = app.add_new_vm(
        "TemplateVM",
        name=prefix + "tpl",
        label="black",
        memory=256,
        maxmem=0,
        vcpus=1,
    )
    app.default_template = template
    net = app.add_new_vm(
        "AppVM", name=prefix + "sys-net", label="red", provides_network=True
    )
    net.netvm = None
    app.default_netvm = net
    dvm = app.add_new_vm(
        "AppVM", name=prefix + "dvm", label="red", template_for_dispvms=True
    )
    app.default_dispvm = dvm
    app.add_new_vm("AppVM", name=prefix + "work", label="blue")
    for vm in app.domains:
        if "private" in vm.volume_config:
            vm.volume_config["private"]["size"] = str(PRIVATE_SIZE)
            vm.storage.invalidate()
    app.save()

    async def create_volumes() -> None:
        for vm in app.domains:
            if vm.qid:
                await vm.create_on_disk()

    asyncio.run(create_volumes())
    engine.import_template(template)
    return app


def _is_shared_mount(path: pathlib.Path) -> bool:
    # A bind mount of the same filesystem fools os.path.ismount();
    # mountinfo says what is mounted where, and how it propagates.
    with open("/proc/self/mountinfo", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[4] == str(path):
                return any(f.startswith("shared:") for f in fields[6:])
    return False


def make_engine(name: str) -> Engine:
    """The engine called *name* (see :data:`ENGINES`)."""
    backend_name, kind = ENGINES[name]
    cls = {
        "test": Engine,
        "qemu": QemuEngine,
        "libvirt": LibvirtLxcEngine,
        "liblxc": LiblxcEngine,
    }[kind]
    return cls(name, backend_name)


#: engine name -> (backend, kind of engine)
ENGINES = {
    "xen-test": ("xen", "test"),
    "kvm-test": ("kvm", "test"),
    "lxc-test": ("lxc", "test"),
    "kvm-qemu": ("kvm", "qemu"),
    "lxc-libvirt": ("lxc", "libvirt"),
    "lxc-liblxc": ("lxc", "liblxc"),
}


def prefix_for(engine: Engine) -> str:
    """A name prefix for one test's domains on a shared engine."""
    if not engine.unique_names:
        return ""
    return f"t{next(_serial)}{hashlib.sha1(os.urandom(8)).hexdigest()[:3]}-"


def ready_boot(text: str, name: str) -> int:
    """The highest boot count that *name*'s init reported ready in
    *text* (after its rc.local ran), or 0."""
    found = re.findall(rf"QUBES-READY name={re.escape(name)} boot=(\d+)", text)
    return max((int(n) for n in found), default=0)


def main(argv: list[str]) -> int:
    """``python engines.py ENGINE``: exit 0 if ENGINE can run here, else
    print why and exit 3."""
    if len(argv) != 1 or argv[0] not in ENGINES:
        print(f"usage: engines.py {{{','.join(ENGINES)}}}")
        return 2
    reason = make_engine(argv[0]).host_unavailable()
    if reason is not None:
        print(reason)
        return 3
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
