"""The qvm-* tools, called in-process on a copy of the sample store."""

import io
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from qubes.app import Qubes
from qubes.tools import (
    qubes_create,
    qvm_create,
    qvm_features,
    qvm_ls,
    qvm_prefs,
    qvm_remove,
    qvm_tags,
)

SCRIPTS = [
    "qubes-create",
    "qubes-prefs",
    "qvm-create",
    "qvm-features",
    "qvm-ls",
    "qvm-prefs",
    "qvm-remove",
    "qvm-tags",
]


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self):
        return self.out.splitlines()


@pytest.fixture
def run(sample_path, capsys):
    """Run a tool's ``main`` on the sample store and capture its output."""

    def run(main, *args, store=None):
        store = sample_path if store is None else store
        code = main(["--qubesxml", str(store), *args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def reload(sample_path):
    return Qubes(str(sample_path))


def cells(line, raw=False):
    return line.split("|") if raw else line.split()


# -- qvm-ls ------------------------------------------------------------------


def test_qvm_ls_default_columns(run):
    result = run(qvm_ls.main)
    assert result.code == 0
    assert cells(result.lines[0]) == [
        "NAME",
        "STATE",
        "CLASS",
        "LABEL",
        "TEMPLATE",
        "NETVM",
    ]


def test_qvm_ls_lists_every_domain_dom0_first(run):
    names = [cells(line)[0] for line in run(qvm_ls.main).lines[1:]]
    assert names == ["dom0", "fedora-41", "fedora-41-dvm", "sys-net", "work"]


def test_qvm_ls_default_row(run):
    rows = {cells(line)[0]: cells(line) for line in run(qvm_ls.main).lines}
    assert rows["work"] == [
        "work",
        "Halted",
        "AppVM",
        "blue",
        "fedora-41",
        "sys-net",
    ]
    assert rows["sys-net"][-1] == "-"
    assert rows["dom0"][:3] == ["dom0", "Running", "AdminVM"]


def test_qvm_ls_columns_are_aligned(run):
    lines = run(qvm_ls.main).lines
    start = lines[0].index("CLASS")
    assert all(line[start:].startswith(line.split()[2]) for line in lines)


def test_qvm_ls_network_format(run):
    result = run(qvm_ls.main, "--format", "network")
    assert cells(result.lines[0]) == [
        "NAME",
        "STATE",
        "NETVM",
        "IP",
        "IPBACK",
        "GATEWAY",
    ]
    rows = {cells(line)[0]: cells(line) for line in result.lines[1:]}
    assert rows["work"] == [
        "work",
        "Halted",
        "sys-net",
        "10.137.0.3",
        "-",
        "10.137.0.2",
    ]
    assert rows["sys-net"][3:5] == ["10.137.0.2", "10.137.0.2"]


def test_qvm_ls_fields(run):
    result = run(qvm_ls.main, "--fields", "name,qid,memory,label")
    assert cells(result.lines[0]) == ["NAME", "QID", "MEMORY", "LABEL"]
    rows = {cells(line)[0]: cells(line) for line in result.lines[1:]}
    assert rows["sys-net"] == ["sys-net", "2", "425", "red"]
    assert rows["work"] == ["work", "3", "400", "blue"]


def test_qvm_ls_raw_list(run):
    result = run(qvm_ls.main, "--raw-list")
    assert result.lines == [
        "dom0",
        "fedora-41",
        "fedora-41-dvm",
        "sys-net",
        "work",
    ]


def test_qvm_ls_raw_data(run):
    result = run(qvm_ls.main, "--raw-data")
    assert "NAME" not in result.out
    assert "work|Halted|AppVM|blue|fedora-41|sys-net" in result.lines
    assert all(len(cells(line, raw=True)) == 6 for line in result.lines)


def test_qvm_ls_raw_data_with_fields(run):
    result = run(qvm_ls.main, "--raw-data", "--fields", "name,ip")
    assert "work|10.137.0.3" in result.lines
    assert "fedora-41|-" in result.lines


def test_qvm_ls_named_domains_only(run):
    result = run(qvm_ls.main, "--raw-list", "work", "sys-net")
    assert result.lines == ["sys-net", "work"]


def test_qvm_ls_by_class_and_tag(run):
    by_class = run(qvm_ls.main, "--raw-list", "--class", "TemplateVM")
    assert by_class.lines == ["fedora-41"]
    by_tag = run(qvm_ls.main, "--raw-list", "--tags", "created-by-dom0")
    assert by_tag.lines == ["work"]


def test_tool_uses_qubes_xml_path_without_option(
    sample_path, capsys, monkeypatch
):
    monkeypatch.setenv("QUBES_XML_PATH", str(sample_path))
    assert qvm_ls.main(["--raw-list"]) == 0
    assert "work" in capsys.readouterr().out.split()


# -- qvm-prefs and qubes-prefs -----------------------------------------------


def test_qvm_prefs_lists_properties_with_default_marks(run):
    result = run(qvm_prefs.main, "work")
    assert result.code == 0
    rows = {cells(line)[0]: cells(line)[1:] for line in result.lines}
    assert rows["label"] == ["-", "blue"]
    assert rows["memory"] == ["D", "400"]
    assert rows["template"] == ["-", "fedora-41"]
    assert rows["netvm"] == ["D", "sys-net"]
    assert list(rows) == sorted(rows)


def test_qvm_prefs_hide_default(run):
    result = run(qvm_prefs.main, "--hide-default", "work")
    names = [cells(line)[0] for line in result.lines]
    assert names == ["label", "name", "qid", "template", "uuid"]


def test_qvm_prefs_shows_one_value(run):
    assert run(qvm_prefs.main, "work", "memory").out == "400\n"
    assert run(qvm_prefs.main, "work", "netvm").out == "sys-net\n"
    assert run(qvm_prefs.main, "work", "label").out == "blue\n"


def test_qvm_prefs_sets_a_value_and_saves(run, sample_path):
    result = run(qvm_prefs.main, "work", "memory", "600")
    assert (result.code, result.out, result.err) == (0, "", "")
    assert reload(sample_path).domains["work"].memory == 600


def test_qvm_prefs_sets_a_domain_reference(run, sample_path):
    assert run(qvm_prefs.main, "work", "netvm", "").code == 0
    work = reload(sample_path).domains["work"]
    assert work.netvm is None
    assert not work.property_is_default("netvm")


def test_qvm_prefs_default_resets_and_saves(run, sample_path):
    assert run(qvm_prefs.main, "sys-net", "memory").out == "425\n"
    assert run(qvm_prefs.main, "--default", "sys-net", "memory").code == 0
    sys_net = reload(sample_path).domains["sys-net"]
    assert sys_net.property_is_default("memory")
    assert sys_net.memory == 400


def test_qubes_prefs_lists_global_properties(run):
    result = run(qvm_prefs.main_global)
    rows = {cells(line)[0]: cells(line)[1:] for line in result.lines}
    assert rows["default_netvm"] == ["-", "sys-net"]
    assert rows["default_kernel"] == ["-", "6.12.1-1.fc41"]
    assert rows["management_dispvm"] == ["D", "-"]


def test_qubes_prefs_shows_one_value(run):
    assert run(qvm_prefs.main_global, "default_template").out == "fedora-41\n"


def test_qubes_prefs_sets_and_resets(run, sample_path):
    assert run(qvm_prefs.main_global, "default_kernel", "6.6.2").code == 0
    assert reload(sample_path).default_kernel == "6.6.2"
    assert run(qvm_prefs.main_global, "--default", "clockvm").code == 0
    app = reload(sample_path)
    assert app.property_is_default("clockvm")
    assert app.clockvm is None


# -- qvm-features ------------------------------------------------------------


def test_qvm_features_lists(run):
    result = run(qvm_features.main, "fedora-41")
    assert [cells(line) for line in result.lines] == [
        ["qrexec", "1"],
        ["os", "Linux"],
    ]


def test_qvm_features_shows_one(run):
    assert run(qvm_features.main, "fedora-41", "os").out == "Linux\n"


def test_qvm_features_sets_and_saves(run, sample_path):
    assert run(qvm_features.main, "work", "service.cups", "1").code == 0
    assert reload(sample_path).domains["work"].features["service.cups"] == "1"


def test_qvm_features_unsets_and_saves(run, sample_path):
    assert run(qvm_features.main, "--unset", "fedora-41", "os").code == 0
    assert "os" not in reload(sample_path).domains["fedora-41"].features


# -- qvm-tags ----------------------------------------------------------------


def test_qvm_tags_lists_sorted(run):
    assert run(qvm_tags.main, "work").lines == [
        "audiovm-dom0",
        "created-by-dom0",
        "guivm-dom0",
    ]
    assert run(qvm_tags.main, "work", "list").lines == [
        "audiovm-dom0",
        "created-by-dom0",
        "guivm-dom0",
    ]


def test_qvm_tags_list_one_tag_tells_by_exit_status(run):
    assert run(qvm_tags.main, "work", "list", "created-by-dom0").code == 0
    assert run(qvm_tags.main, "work", "list", "nope").code == 1


def test_qvm_tags_adds_and_saves(run, sample_path):
    assert run(qvm_tags.main, "work", "add", "project-x", "secret").code == 0
    tags = reload(sample_path).domains["work"].tags
    assert {"project-x", "secret"} <= set(tags)


def test_qvm_tags_deletes_and_saves(run, sample_path):
    assert run(qvm_tags.main, "work", "del", "created-by-dom0").code == 0
    assert "created-by-dom0" not in reload(sample_path).domains["work"].tags


# -- qvm-create --------------------------------------------------------------


def test_qvm_create_appvm_with_template(run, sample_path):
    result = run(
        qvm_create.main,
        "--class",
        "AppVM",
        "--label",
        "green",
        "--template",
        "fedora-41",
        "office",
    )
    assert (result.code, result.err) == (0, "")
    office = reload(sample_path).domains["office"]
    assert (office.klass, office.label.name, office.qid) == (
        "AppVM",
        "green",
        5,
    )
    assert office.template.name == "fedora-41"
    assert office.volume_config["root"]["source"] == (
        "vm-templates/fedora-41/root"
    )
    assert "created-by-dom0" in office.tags


def test_qvm_create_appvm_is_the_default_class(run, sample_path):
    assert run(qvm_create.main, "--label", "red", "office").code == 0
    office = reload(sample_path).domains["office"]
    assert office.klass == "AppVM"
    assert office.template.name == "fedora-41"


@pytest.mark.parametrize("klass", ["TemplateVM", "StandaloneVM"])
def test_qvm_create_other_classes(run, sample_path, klass):
    assert (
        run(qvm_create.main, "--class", klass, "-l", "red", "newvm").code == 0
    )
    assert reload(sample_path).domains["newvm"].klass == klass


def test_qvm_create_dispvm(run, sample_path):
    assert run(qvm_create.main, "-C", "DispVM", "-l", "red", "mydisp").code == 0
    disp = reload(sample_path).domains["mydisp"]
    assert disp.klass == "DispVM"
    assert disp.template.name == "fedora-41-dvm"
    assert disp.ip.startswith("10.138.")


def test_qvm_create_with_properties(run, sample_path):
    result = run(
        qvm_create.main, "-l", "red", "-p", "memory=512", "-p", "vcpus=3", "vm"
    )
    assert result.code == 0
    vm = reload(sample_path).domains["vm"]
    assert (vm.memory, vm.vcpus) == (512, 3)


# -- qvm-remove --------------------------------------------------------------


def test_qvm_remove_force_removes_and_saves(run, sample_path):
    assert run(qvm_remove.main, "--force", "work").code == 0
    assert "work" not in reload(sample_path).domains


def test_qvm_remove_answered_no_removes_nothing(
    run, sample_path, sample_bytes, monkeypatch
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    result = run(qvm_remove.main, "work")
    assert "work" in result.out
    assert "Nothing removed" in result.out
    assert sample_path.read_bytes() == sample_bytes


def test_qvm_remove_answered_yes_removes(run, sample_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert run(qvm_remove.main, "work").code == 0
    assert "work" not in reload(sample_path).domains


def test_qvm_remove_several_domains(run, sample_path):
    run(qvm_create.main, "-l", "red", "one")
    run(qvm_create.main, "-l", "red", "two")
    assert run(qvm_remove.main, "-f", "one", "two").code == 0
    domains = reload(sample_path).domains
    assert "one" not in domains
    assert "two" not in domains


# -- qubes-create ------------------------------------------------------------


def test_qubes_create_makes_a_new_store(run, tmp_path):
    path = tmp_path / "new" / "qubes.xml"
    result = run(qubes_create.main, store=path)
    assert result.code == 0
    assert result.out == f"{path}\n"
    assert [vm.name for vm in Qubes(str(path)).domains] == ["dom0"]


# -- errors ------------------------------------------------------------------

ERRORS = [
    (qvm_ls.main, ["nope"]),
    (qvm_ls.main, ["--fields", "name,colour"]),
    (qvm_prefs.main, ["nope"]),
    (qvm_prefs.main, ["work", "colour"]),
    (qvm_prefs.main, ["work", "memory", "lots"]),
    (qvm_prefs.main, ["work", "qid", "9"]),
    (qvm_prefs.main, ["work", "netvm", "fedora-41"]),
    (qvm_prefs.main, ["work", "template", "nope"]),
    (qvm_prefs.main, ["work", "name", "sys-net"]),
    (qvm_prefs.main, ["dom0", "name", "admin"]),
    (qvm_prefs.main_global, ["default_netvm", "work"]),
    (qvm_prefs.main_global, ["default_pool", "nope"]),
    (qvm_features.main, ["work", "nope"]),
    (qvm_features.main, ["--unset", "work", "nope"]),
    (qvm_tags.main, ["work", "del", "nope"]),
    (qvm_tags.main, ["work", "add", "two words"]),
    (qvm_tags.main, ["work", "add"]),
    (qvm_create.main, ["--label", "red", "1abc"]),
    (qvm_create.main, ["--label", "red", "work"]),
    (qvm_create.main, ["--label", "pink", "office"]),
    (qvm_create.main, ["--class", "FooVM", "--label", "red", "office"]),
    (
        qvm_create.main,
        ["-C", "TemplateVM", "-l", "red", "-t", "fedora-41", "t"],
    ),
    (qvm_create.main, ["--label", "red", "--template", "work", "office"]),
    (qvm_create.main, ["--label", "red", "-p", "memory=lots", "office"]),
    (qvm_create.main, ["--label", "red", "-p", "colour=red", "office"]),
    (qvm_remove.main, ["--force", "nope"]),
    (qvm_remove.main, ["--force", "fedora-41"]),
    (qvm_remove.main, ["--force", "work", "sys-net"]),
    (qvm_remove.main, ["--force", "dom0"]),
    (qubes_create.main, []),
]


def _error_id(case):
    main, args = case
    return f"{main.__module__.rsplit('.', 1)[-1]}:{' '.join(args)}"


@pytest.mark.parametrize(
    ("main", "args"), ERRORS, ids=[_error_id(case) for case in ERRORS]
)
def test_error_is_one_line_and_changes_nothing(
    run, sample_path, sample_bytes, main, args
):
    result = run(main, *args)
    assert result.code != 0
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert ": error: " in result.err
    assert sample_path.read_bytes() == sample_bytes


@pytest.mark.parametrize(
    "prop", ["features=x", "tags=ab", "devices=x", "xml=x", "app=x", "cls=x"]
)
def test_qvm_create_refuses_names_that_are_not_properties(
    run, sample_path, sample_bytes, prop
):
    # These name arguments of the domain constructor, not properties:
    # they must be refused like any unknown property name.
    try:
        result = run(qvm_create.main, "--label", "red", "-p", prop, "office")
    except Exception as err:
        pytest.fail(f"qvm-create let {type(err).__name__} escape: {err}")
    assert result.code == 1
    assert len(result.err.strip().splitlines()) == 1
    assert sample_path.read_bytes() == sample_bytes


@pytest.mark.parametrize(
    ("main", "args"),
    [
        (qvm_ls.main, []),
        (qvm_prefs.main, ["work"]),
        (qvm_features.main, ["work"]),
        (qvm_tags.main, ["work"]),
        (qvm_remove.main, ["--force", "work"]),
    ],
    ids=["qvm-ls", "qvm-prefs", "qvm-features", "qvm-tags", "qvm-remove"],
)
def test_missing_store_is_one_line(run, tmp_path, main, args):
    missing = tmp_path / "missing.xml"
    result = run(main, *args, store=missing)
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert str(missing) in result.err
    assert not missing.exists()


def test_malformed_store_is_one_line(run, sample_path):
    sample_path.write_text("<qubes><domains>")
    result = run(qvm_ls.main)
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert str(sample_path) in result.err


def test_bad_usage_exits_2(run, sample_bytes, sample_path):
    with pytest.raises(SystemExit) as info:
        run(qvm_ls.main, "--format", "nope")
    assert info.value.code == 2
    assert sample_path.read_bytes() == sample_bytes


# -- the installed console scripts -------------------------------------------


def _script(name):
    return os.path.join(os.path.dirname(sys.executable), name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_console_script_is_installed(name):
    assert os.access(_script(name), os.X_OK)


def test_console_script_runs(sample_path):
    result = subprocess.run(
        [_script("qvm-ls"), "--qubesxml", str(sample_path), "--raw-list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "dom0",
        "fedora-41",
        "fedora-41-dvm",
        "sys-net",
        "work",
    ]
