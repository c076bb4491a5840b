"""The in-process QubesDB: entries, folders, watches, and bad paths."""

import pytest

from qubes import exc
from qubes.qdb import LocalQubesDB

BAD_PATHS = ["relative", "/a//b", "/nul\0here", "", 7]


@pytest.fixture
def qdb():
    return LocalQubesDB("work")


def test_write_read_list_and_remove_a_folder(qdb):
    qdb.write("/name", "work")
    qdb.write_many({"/qubes-service/a": "1", "/qubes-service/b": "0"})
    assert qdb.read("/name") == b"work"
    assert qdb.list("/qubes-service/") == [
        "/qubes-service/a",
        "/qubes-service/b",
    ]
    qdb.rm("/qubes-service/")
    assert qdb.list() == ["/name"]
    assert qdb.read("/missing") is None


def test_watches_see_writes_and_removals_below_a_folder(qdb):
    seen = []
    qdb.watch("/qubes-service/", seen.append)
    qdb.write_many({"/qubes-service/a": "1", "/name": "work"})
    qdb.rm("/qubes-service/a")
    assert seen == ["/qubes-service/a", "/qubes-service/a"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_bad_path_is_a_named_error_and_nothing_is_written(qdb, path):
    qdb.write("/kept", "1")
    for attempt in (
        lambda: qdb.write(path, "x"),
        lambda: qdb.write_many({"/fine": "1", path: "x"}),
        lambda: qdb.read(path),
        lambda: qdb.rm(path),
    ):
        with pytest.raises(exc.QubesValueError) as raised:
            attempt()
        assert repr(path) in str(raised.value)
    assert qdb.list() == ["/kept"]


def test_a_folder_cannot_be_written(qdb):
    for attempt in (
        lambda: qdb.write("/folder/", "x"),
        lambda: qdb.write_many({"/folder/": "x"}),
    ):
        with pytest.raises(exc.QubesValueError, match="folder"):
            attempt()
    assert qdb.list() == []
