"""The pool drivers and a domain's storage lifecycle, on real files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess

import pytest

from qubes import exc
from qubes.storage import (
    PERSISTENT,
    READ_ONLY,
    SNAPSHOT,
    VOLATILE,
    Storage,
    make_pool,
)

MIB = 1024 * 1024


def run(coroutine):
    return asyncio.run(coroutine)


def _config(name, vid, **flags):
    config = {
        "name": name,
        "pool": "p",
        "vid": vid,
        "rw": "True",
        "save_on_stop": "False",
        "snap_on_start": "False",
        "revisions_to_keep": "0",
        "size": str(4 * MIB),
    }
    config.update({k: str(v) for k, v in flags.items()})
    return config


def _volume(pool, name, vid, **flags):
    return pool.init_volume(None, _config(name, vid, **flags))


@pytest.fixture(params=["file", "qcow2"])
def image_pool(request, tmp_path):
    if request.param == "qcow2" and shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) is not installed")
    return make_pool("p", {"driver": request.param, "dir_path": str(tmp_path)})


@pytest.mark.parametrize(
    ("flags", "role"),
    [
        ({"save_on_stop": True}, PERSISTENT),
        ({"snap_on_start": True, "source": "x"}, SNAPSHOT),
        ({}, VOLATILE),
        ({"rw": False}, READ_ONLY),
    ],
)
def test_roles_follow_the_flags(tmp_path, flags, role):
    pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
    assert _volume(pool, "v", "a/v", **flags).role == role


def test_persistent_volume_is_made_at_create_and_kept(image_pool):
    volume = _volume(image_pool, "private", "appvms/a/private", save_on_stop=1)
    assert not volume.exists()
    run(volume.create())
    assert volume.exists()
    run(volume.start())
    run(volume.stop())
    assert volume.exists()


def test_file_volume_is_sparse_of_its_size(tmp_path):
    pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
    volume = _volume(pool, "private", "a/private", save_on_stop=True)
    run(volume.create())
    stat = os.stat(volume.path)
    assert stat.st_size == 4 * MIB
    assert stat.st_blocks * 512 < MIB


def test_snapshot_is_made_at_start_and_dropped_at_stop(image_pool):
    source = _volume(image_pool, "root", "tpl/root", save_on_stop=True)
    run(source.create())
    snap = _volume(
        image_pool, "root", "app/root", snap_on_start=True, source="tpl/root"
    )
    assert not snap.exists()
    run(snap.start())
    assert snap.exists()
    run(snap.stop())
    assert not snap.exists()
    assert source.exists()


def test_file_snapshot_is_a_copy_of_its_source(tmp_path):
    pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
    source = _volume(pool, "root", "tpl/root", save_on_stop=True)
    run(source.create())
    with open(source.path, "r+b") as image:
        image.write(b"template data")
    snap = _volume(
        pool, "root", "app/root", snap_on_start=True, source="tpl/root"
    )
    run(snap.start())
    with open(snap.path, "rb") as image:
        assert image.read(13) == b"template data"
    with open(snap.path, "r+b") as image:
        image.write(b"app's changes")
    with open(source.path, "rb") as image:
        assert image.read(13) == b"template data"


def test_qcow2_snapshot_is_an_overlay_of_its_source(tmp_path):
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) is not installed")
    pool = make_pool("p", {"driver": "qcow2", "dir_path": str(tmp_path)})
    source = _volume(pool, "root", "tpl/root", save_on_stop=True)
    run(source.create())
    snap = _volume(
        pool, "root", "app/root", snap_on_start=True, source="tpl/root"
    )
    run(snap.start())
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", snap.path],
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == source.path


def test_volatile_volume_is_emptied_at_each_start(tmp_path):
    pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
    volume = _volume(pool, "volatile", "a/volatile")
    run(volume.start())
    with open(volume.path, "r+b") as image:
        image.write(b"scratch")
    run(volume.stop())
    assert not volume.exists()
    run(volume.start())
    with open(volume.path, "rb") as image:
        assert image.read(7) == b"\0" * 7


def test_file_revisions_are_kept_and_pruned(tmp_path):
    pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
    volume = _volume(
        pool, "private", "a/private", save_on_stop=True, revisions_to_keep=2
    )
    run(volume.create())
    for _ in range(4):
        run(volume.start())
        run(volume.stop())
    revisions = [n for n in os.listdir(tmp_path / "a") if ".rev" in n]
    assert len(revisions) == 2
    run(volume.remove())
    assert os.listdir(tmp_path / "a") == []


def test_qcow2_revisions_are_internal_snapshots(tmp_path):
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img (qemu-utils) is not installed")
    pool = make_pool("p", {"driver": "qcow2", "dir_path": str(tmp_path)})
    volume = _volume(
        pool, "private", "a/private", save_on_stop=True, revisions_to_keep=2
    )
    run(volume.create())
    for _ in range(3):
        run(volume.start())
    listing = subprocess.run(
        ["qemu-img", "snapshot", "-l", volume.path],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    assert listing.count("qubes-rev-") == 2


def test_missing_persistent_volume_fails_verify(image_pool):
    volume = _volume(image_pool, "private", "a/private", save_on_stop=True)
    with pytest.raises(exc.QubesStorageError, match="private"):
        volume.verify()


def test_missing_snapshot_source_fails_verify(image_pool):
    volume = _volume(
        image_pool, "root", "a/root", snap_on_start=True, source="tpl/root"
    )
    with pytest.raises(exc.QubesStorageError, match="tpl/root"):
        volume.verify()


def test_ephemeral_volumes_are_refused(image_pool):
    volume = _volume(image_pool, "volatile", "a/volatile", ephemeral=True)
    with pytest.raises(exc.QubesUnsupportedError, match="ephemeral"):
        volume.verify()


def test_volume_of_an_unknown_driver_cannot_be_used(tmp_path):
    pool = make_pool("lvm", {"driver": "lvm_thin", "volume_group": "qubes"})
    volume = _volume(pool, "private", "a/private", save_on_stop=True)
    with pytest.raises(exc.QubesUnsupportedError, match="lvm_thin"):
        _ = volume.path
    with pytest.raises(exc.QubesUnsupportedError):
        run(volume.create())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")
def test_dir_snapshot_is_an_overlay_of_its_source(tmp_path):
    pool = make_pool("p", {"driver": "dir", "dir_path": str(tmp_path)})
    source = _volume(pool, "root", "tpl/root", save_on_stop=True)
    run(source.create())
    (tmp_path / "tpl" / "root" / "etc").mkdir()
    (tmp_path / "tpl" / "root" / "etc" / "hostname").write_text("tpl\n")
    snap = _volume(
        pool, "root", "app/root", snap_on_start=True, source="tpl/root"
    )
    run(snap.start())
    try:
        merged = tmp_path / "app" / "root"
        assert (merged / "etc" / "hostname").read_text() == "tpl\n"
        (merged / "etc" / "hostname").write_text("app\n")
        (merged / "new-file").write_text("x")
        assert (
            tmp_path / "tpl" / "root" / "etc" / "hostname"
        ).read_text() == "tpl\n"
    finally:
        run(snap.stop())
    assert not os.path.ismount(tmp_path / "app" / "root")
    assert not (tmp_path / "app" / "root").exists()
    assert not (tmp_path / "tpl" / "root" / "new-file").exists()


def test_dir_import_copies_a_folder(tmp_path):
    pool = make_pool("p", {"driver": "dir", "dir_path": str(tmp_path / "p")})
    source = tmp_path / "rootfs"
    (source / "sbin").mkdir(parents=True)
    (source / "sbin" / "init").write_text("#!/bin/sh\n")
    volume = _volume(pool, "root", "tpl/root", save_on_stop=True)
    volume.import_data(str(source))
    assert (tmp_path / "p" / "tpl" / "root" / "sbin" / "init").exists()


class _Domain:
    """The little of a domain that Storage reads."""

    def __init__(self, tmp_path, configs):
        pool = make_pool("p", {"driver": "file", "dir_path": str(tmp_path)})
        self.app = type("App", (), {"pools": {"p": pool}})()
        self.volume_config = configs
        self.name = "d"
        self.kernel = None


def test_a_failed_start_undoes_the_volumes_started_before(tmp_path):
    configs = {
        "root": _config(
            "root", "d/root", snap_on_start=True, source="tpl/root"
        ),
        "volatile": _config("volatile", "d/volatile"),
    }
    domain = _Domain(tmp_path, configs)
    storage = Storage(domain)
    template_root = _volume(
        domain.app.pools["p"], "root", "tpl/root", save_on_stop=True
    )
    run(template_root.create())

    def fail():
        raise exc.QubesStorageError("the disk is full")

    storage.volumes["volatile"].make_empty = fail
    with pytest.raises(exc.QubesStorageError, match="full") as info:
        run(storage.start())
    assert info.value.domain == "d"
    assert not storage.volumes["root"].exists()


def test_a_failed_create_removes_the_volumes_made_before(tmp_path):
    configs = {
        "private": _config("private", "d/private", save_on_stop=True),
        "root": _config("root", "d/root", save_on_stop=True),
    }
    domain = _Domain(tmp_path, configs)
    storage = Storage(domain)

    def fail():
        raise exc.QubesStorageError("no space left")

    storage.volumes["root"].make_empty = fail
    with pytest.raises(exc.QubesStorageError):
        run(storage.create())
    assert not storage.volumes["private"].exists()
