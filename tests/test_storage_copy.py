"""Copying images in-process: content, holes, size, mode, fallbacks."""

from __future__ import annotations

import errno
import os

import pytest

from qubes import exc
from qubes.storage import _copy, _files

MIB = 1 << 20


@pytest.fixture
def image(tmp_path):
    """A 64 MiB sparse image with data at 1 MiB and at 40 MiB."""
    path = tmp_path / "source.img"
    with open(path, "wb") as file:
        file.truncate(64 * MIB)
        file.seek(MIB)
        file.write(b"first" * 1000)
        file.seek(40 * MIB)
        file.write(os.urandom(3 * MIB))
    path.chmod(0o640)
    return path


def _check_copy(source, target):
    assert target.read_bytes() == source.read_bytes()
    stat = target.stat()
    assert stat.st_size == 64 * MIB
    assert stat.st_mode & 0o777 == 0o640
    # Holes are kept: far less than the 64 MiB is allocated.
    assert stat.st_blocks * 512 < 8 * MIB


def test_copy_keeps_data_holes_size_and_mode(image, tmp_path):
    target = tmp_path / "copy.img"
    _files.copy_file(str(image), str(target))
    _check_copy(image, target)


def test_copy_replaces_a_larger_target(image, tmp_path):
    target = tmp_path / "copy.img"
    target.write_bytes(b"x" * (70 * MIB))
    _files.copy_file(str(image), str(target))
    _check_copy(image, target)


def test_copy_without_shared_blocks_copies_the_data_runs(
    image, tmp_path, monkeypatch
):
    monkeypatch.setattr(_copy, "_clone", lambda source, target, device: False)
    target = tmp_path / "copy.img"
    _files.copy_file(str(image), str(target))
    _check_copy(image, target)


def test_copy_falls_back_to_reads_and_writes(image, tmp_path, monkeypatch):
    def cross_device(*args):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(_copy, "_clone", lambda source, target, device: False)
    monkeypatch.setattr(_copy.os, "copy_file_range", cross_device)
    target = tmp_path / "copy.img"
    _files.copy_file(str(image), str(target))
    _check_copy(image, target)


def test_copy_of_a_missing_image_is_a_storage_error(tmp_path):
    target = tmp_path / "sub" / "copy.img"
    with pytest.raises(exc.QubesStorageError) as info:
        _files.copy_file(str(tmp_path / "missing.img"), str(target))
    assert str(target) in str(info.value)
    assert not target.exists()


def test_a_filesystem_without_shared_blocks_is_not_asked_twice(
    tmp_path, monkeypatch
):
    asked = []

    def ioctl(fd, request, arg):
        asked.append(request)
        raise OSError(errno.EOPNOTSUPP, "not here")

    monkeypatch.setattr(_copy, "_NO_CLONE", set())
    monkeypatch.setattr(_copy.fcntl, "ioctl", ioctl)
    source = tmp_path / "a.img"
    source.write_bytes(b"data")
    for name in ("b.img", "c.img"):
        _copy.copy_image(str(source), str(tmp_path / name))
        assert (tmp_path / name).read_bytes() == b"data"
    assert len(asked) == 1


def test_a_missing_folder_is_made_for_the_copy(tmp_path):
    source = tmp_path / "a.img"
    source.write_bytes(b"data")
    target = tmp_path / "new" / "deeper" / "b.img"
    _copy.copy_image(str(source), str(target))
    assert target.read_bytes() == b"data"


def test_a_tree_copy_makes_fifos_anew_and_leaves_sockets_out(tmp_path):
    import socket
    import stat

    source = tmp_path / "private"
    (source / "home").mkdir(parents=True)
    (source / "home" / "notes").write_text("kept\n")
    os.mkfifo(source / "home" / "pipe", 0o640)
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(source / "home" / "sock"))
        _files.copy_tree(str(source), str(tmp_path / "revision"))
    finally:
        server.close()
    copied = tmp_path / "revision" / "home"
    assert (copied / "notes").read_text() == "kept\n"
    pipe = os.lstat(copied / "pipe")
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o640
    assert not os.path.lexists(copied / "sock")
