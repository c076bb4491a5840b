"""qvm-start, qvm-shutdown, qvm-kill, qvm-pause, qvm-unpause and qvm-ls,
called in-process on the simulated host of each test.

An error is one line on stderr, ``PROG: error: ...``, with exit status
1, and never a traceback.
"""

import os
import signal
from dataclasses import dataclass

import lxml.etree
import pytest

from qubes.tools import lifecycle, qvm_ls
from qubes.vm.qubesvm import QubesVM

pytestmark = pytest.mark.usefixtures("only_the_test_driver")


TOOLS = {
    "qvm-start": lifecycle.start,
    "qvm-shutdown": lifecycle.shutdown,
    "qvm-kill": lifecycle.kill,
    "qvm-pause": lifecycle.pause,
    "qvm-unpause": lifecycle.unpause,
    "qvm-ls": qvm_ls.main,
}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run(sample_path, capsys):
    """Run a tool in-process on the sample's copy; capture its output."""

    def run(prog, *args):
        code = TOOLS[prog](["--qubesxml", str(sample_path), *args])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def states(run):
    """Each domain's state, as qvm-ls shows it now."""

    def read():
        result = run("qvm-ls", "--raw-data", "--fields", "NAME,STATE")
        assert result.code == 0, result.err
        return dict(line.split("|") for line in result.out.splitlines())

    return read


def _ok(result):
    assert result.code == 0, result.err
    assert result.err == ""
    return result


def _one_line_error(result, prog):
    assert result.code == 1
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


# -- what works ------------------------------------------------------------


def test_start_runs_the_domain_and_its_netvm(run, states):
    _ok(run("qvm-start", "work"))
    now = states()
    assert (now["work"], now["sys-net"]) == ("Running", "Running")
    assert now["fedora-41"] == "Halted"


def test_start_of_several_domains_starts_each(run, states):
    _ok(run("qvm-start", "fedora-41", "fedora-41-dvm"))
    now = states()
    assert now["fedora-41"] == now["fedora-41-dvm"] == "Running"


def test_pause_then_unpause(run, states):
    _ok(run("qvm-start", "work"))
    _ok(run("qvm-pause", "work"))
    assert states()["work"] == "Paused"
    _ok(run("qvm-unpause", "work"))
    assert states()["work"] == "Running"


def test_kill_halts_the_domain(run, states):
    _ok(run("qvm-start", "work"))
    _ok(run("qvm-kill", "work"))
    assert states()["work"] == "Halted"


def test_shutdown_wait_halts_the_domain(run, states):
    _ok(run("qvm-start", "fedora-41"))
    _ok(run("qvm-shutdown", "--wait", "--timeout", "10", "fedora-41"))
    assert states()["fedora-41"] == "Halted"


def test_qvm_ls_state_column_is_live(run):
    _ok(run("qvm-start", "fedora-41"))
    rows = {
        line.split()[0]: line.split()[1]
        for line in _ok(run("qvm-ls")).out.splitlines()[1:]
    }
    assert rows["fedora-41"] == "Running"
    assert rows["work"] == "Halted"
    assert rows["dom0"] == "Running"


def test_qvm_ls_running_filter_follows_the_engine(run):
    _ok(run("qvm-start", "work"))
    names = _ok(run("qvm-ls", "--running", "--raw-list")).out.split()
    assert names == ["dom0", "sys-net", "work"]


def test_qvm_ls_backend_info_says_backend_uri_and_reason(run, simulated_host):
    lines = _ok(run("qvm-ls", "--backend-info")).out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("backend xen")
    assert f"test://{simulated_host}" in lines[0]
    assert lines[1].startswith("set by the environment")


def test_qvm_ls_backend_info_with_options(run, tmp_path):
    node = tmp_path / "node-b.xml"
    result = _ok(
        run(
            "qvm-ls",
            "--backend-info",
            "--backend",
            "lxc",
            "--uri",
            f"test://{node}",
        )
    )
    describe, reason = result.out.splitlines()
    assert describe.startswith("backend lxc")
    assert str(node) in describe
    assert reason == "set by the command line"


def test_qvm_ls_backend_info_of_an_engine_out_of_reach(run, tmp_path):
    # What was chosen, and why, is said before the engine is asked (a
    # test driver URI of a file that is not there cannot be opened).
    uri = f"test://{tmp_path}/no-such-node"
    result = run("qvm-ls", "--backend-info", "--backend", "kvm", "--uri", uri)
    assert result.code == 1
    assert result.out.splitlines() == [
        f"backend kvm, URI {uri}",
        "set by the command line",
    ]
    line = _one_line_error(result, "qvm-ls")
    assert "cannot connect" in line


def test_dry_run_prints_xml_and_starts_nothing(run, states, simulated_host):
    result = run("qvm-start", "--dry-run", "work")
    assert result.code == 0, result.err
    assert result.err.startswith("backend xen ")
    assert lxml.etree.fromstring(result.out).findtext("name") == "work"
    assert states()["work"] == "Halted"
    assert not simulated_host.exists()


# -- errors: one line, no traceback ----------------------------------------


def test_start_of_a_paused_domain_says_it_is_paused(run):
    _ok(run("qvm-start", "work"))
    _ok(run("qvm-pause", "work"))
    line = _one_line_error(run("qvm-start", "work"), "qvm-start")
    assert "'work'" in line
    assert "is paused; qvm-unpause it" in line


def test_kill_of_a_halted_domain(run):
    line = _one_line_error(run("qvm-kill", "work"), "qvm-kill")
    assert "'work'" in line
    assert "not running" in line


def test_start_of_an_unknown_domain(run):
    line = _one_line_error(run("qvm-start", "nosuch"), "qvm-start")
    assert "nosuch" in line


@pytest.mark.parametrize(
    "prog", ["qvm-kill", "qvm-shutdown", "qvm-pause", "qvm-unpause"]
)
def test_other_tools_on_an_unknown_domain(run, prog):
    line = _one_line_error(run(prog, "nosuch"), prog)
    assert "nosuch" in line


def test_pause_of_a_halted_domain(run, states):
    line = _one_line_error(run("qvm-pause", "work"), "qvm-pause")
    assert "'work'" in line
    assert states()["work"] == "Halted"


def test_unpause_of_a_running_domain(run, states):
    _ok(run("qvm-start", "work"))
    line = _one_line_error(run("qvm-unpause", "work"), "qvm-unpause")
    assert "not paused" in line
    assert states()["work"] == "Running"


def test_start_twice(run, states):
    _ok(run("qvm-start", "work"))
    line = _one_line_error(run("qvm-start", "work"), "qvm-start")
    assert "already running" in line
    assert states()["work"] == "Running"


def test_shutdown_of_a_halted_domain(run):
    line = _one_line_error(run("qvm-shutdown", "work"), "qvm-shutdown")
    assert "not running" in line


def test_shutdown_of_a_netvm_with_a_running_client(run, states):
    _ok(run("qvm-start", "work"))
    line = _one_line_error(
        run("qvm-shutdown", "--wait", "sys-net"), "qvm-shutdown"
    )
    assert "work" in line
    assert states()["sys-net"] == "Running"


def test_first_error_stops_the_rest(run, states):
    result = run("qvm-start", "fedora-41", "nosuch", "fedora-41-dvm")
    _one_line_error(result, "qvm-start")
    assert states()["fedora-41-dvm"] == "Halted"


@pytest.mark.parametrize("prog", sorted(TOOLS))
def test_unknown_backend(run, prog):
    args = ["--backend", "nosuch"] + ([] if prog == "qvm-ls" else ["work"])
    line = _one_line_error(run(prog, *args), prog)
    assert "nosuch" in line


@pytest.mark.parametrize("prog", ["qvm-start", "qvm-kill", "qvm-ls"])
def test_uri_with_an_unknown_scheme(run, prog):
    args = ["--uri", "vbox:///session"] + ([] if prog == "qvm-ls" else ["work"])
    line = _one_line_error(run(prog, *args), prog)
    assert "vbox:///session" in line


def test_dry_run_of_an_unsupported_virt_mode(run, simulated_host):
    result = run(
        "qvm-start",
        "--dry-run",
        "--backend",
        "lxc",
        "--uri",
        f"test://{simulated_host}",
        "sys-net",
    )
    line = _one_line_error(result, "qvm-start")
    assert "virt_mode" in line


# -- an interrupt ------------------------------------------------------------


def test_interrupt_says_which_domains_were_done(run, states, monkeypatch):
    # Ctrl-C while the second domain starts: the first one runs, and the
    # tool says so.
    start = QubesVM.start

    async def interrupted(vm):
        if vm.name == "fedora-41-dvm":
            raise KeyboardInterrupt
        return await start(vm)

    monkeypatch.setattr(QubesVM, "start", interrupted)
    result = run("qvm-start", "work", "fedora-41-dvm")
    assert result.code == 130
    assert result.err == (
        "qvm-start: interrupted; done: work; not done: fedora-41-dvm\n"
    )
    assert states()["work"] == "Running"
    assert states()["fedora-41-dvm"] == "Halted"


def test_a_timeout_that_is_no_number_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        lifecycle.shutdown(["--timeout", "abc", "work"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.endswith("argument --timeout: invalid seconds value: 'abc'")


# -- --all and --exclude -------------------------------------------------------

ALL_HALTED = {
    "dom0": "Running",
    "fedora-41": "Halted",
    "fedora-41-dvm": "Halted",
    "sys-net": "Halted",
    "work": "Halted",
}


def test_start_all_but_the_excluded(run, states):
    _ok(run("qvm-start", "--all", "--exclude", "fedora-41-dvm"))
    assert states() == {
        **ALL_HALTED,
        "fedora-41": "Running",
        "sys-net": "Running",
        "work": "Running",
    }


def test_shutdown_all_takes_clients_down_before_their_netvm(run, states):
    # Without that order the netvm's shutdown is refused under its
    # running client.
    _ok(run("qvm-start", "work", "fedora-41-dvm"))
    _ok(run("qvm-shutdown", "--all", "--wait"))
    assert states() == ALL_HALTED


def test_kill_pause_and_unpause_all(run, states):
    _ok(run("qvm-start", "work"))
    _ok(run("qvm-pause", "--all"))
    assert states()["work"] == states()["sys-net"] == "Paused"
    _ok(run("qvm-unpause", "--all"))
    assert states()["work"] == states()["sys-net"] == "Running"
    _ok(run("qvm-kill", "--all"))
    assert states() == ALL_HALTED


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--all", "work"], "not both"),
        (["--exclude", "work", "sys-net"], "--exclude goes with --all"),
        ([], "name at least one domain, or --all"),
        (["--all", "--exclude", "nosuch"], "nosuch"),
    ],
)
def test_a_wrong_choice_of_domains_is_one_line(run, states, args, words):
    line = _one_line_error(run("qvm-start", *args), "qvm-start")
    assert words in line
    assert states() == ALL_HALTED


def test_start_all_when_a_netvm_comes_up_with_its_client(run, states):
    # fedora-41-dvm comes before sys-net, its netvm, which it starts.
    _ok(run("qvm-start", "--all"))
    assert set(states().values()) == {"Running"}


def test_a_netvm_named_after_its_client_is_no_error(run, states):
    _ok(run("qvm-start", "work", "sys-net"))
    assert states()["sys-net"] == "Running"


def test_a_running_domain_named_is_still_an_error(run):
    _ok(run("qvm-start", "sys-net"))
    line = _one_line_error(run("qvm-start", "work", "sys-net"), "qvm-start")
    assert "'sys-net': is already running" in line


def test_ctrl_c_during_all_stops_before_the_next_domain(
    run, states, monkeypatch
):
    # The signal comes while the first domain starts (asyncio turns it
    # into a cancel): that one runs, the others are left.
    start = QubesVM.start
    started = []

    async def start_then_interrupt(vm):
        await start(vm)
        if not started:
            os.kill(os.getpid(), signal.SIGINT)
        started.append(vm.name)
        return vm

    monkeypatch.setattr(QubesVM, "start", start_then_interrupt)
    result = run("qvm-start", "--all", "--exclude", "sys-net")
    assert result.code == 130
    assert started == ["fedora-41"]
    assert result.err == (
        "qvm-start: interrupted; done: fedora-41; "
        "not done: fedora-41-dvm, work\n"
    )
    assert states()["fedora-41"] == "Running"
    assert states()["work"] == "Halted"
