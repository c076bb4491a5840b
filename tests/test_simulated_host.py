"""The simulated host: libvirt's test driver with its state in a node
file, shared by every process that opens the same file.

Most tests run the installed console scripts as separate processes, so
that what one process does is seen by the next only through the file.
Every process is given the node file (by QUBES_LIBVIRT_URI, set for each
test by conftest, or by --uri): none may auto-detect a real daemon.
"""

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import libvirt
import lxml.etree
import pytest

import qubes
from qubes.backends.simulated import QUBES_NS, TEST_NS

RUNSTATE = f"{{{TEST_NS}}}runstate"
TRANSIENT = f"{{{QUBES_NS}}}transient"
HALTED = {
    "dom0": "Running",
    "fedora-41": "Halted",
    "fedora-41-dvm": "Halted",
    "sys-net": "Halted",
    "work": "Halted",
}


@dataclass
class Result:
    code: int
    out: str
    err: str


def _script(name):
    return os.path.join(os.path.dirname(sys.executable), name)


@pytest.fixture
def tool(sample_path):
    """Run a console script on the sample's copy, in a new process."""

    def run(name, *args, env=None):
        done = subprocess.run(
            [_script(name), "--qubesxml", str(sample_path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def states(tool):
    """The power state of each domain, as qvm-ls in a new process says."""

    def read(*args, env=None):
        result = tool(
            "qvm-ls", "--raw-data", "--fields", "NAME,STATE", *args, env=env
        )
        assert result.code == 0, result.err
        return dict(line.split("|") for line in result.out.splitlines())

    return read


def _ok(result):
    assert result.code == 0, result.err
    return result


def _one_line_error(result, prog):
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


def _engine_states(node):
    # A fresh test-driver connection on the file: what libvirt itself
    # reads from it, without this package.
    conn = libvirt.open(f"test://{node}")
    try:
        return {d.name(): d.state()[0] for d in conn.listAllDomains()}
    finally:
        conn.close()


# -- state kept between processes ------------------------------------------


def test_started_domain_and_its_netvm_run_in_the_next_process(tool, states):
    _ok(tool("qvm-start", "work"))
    assert states() == {**HALTED, "work": "Running", "sys-net": "Running"}


def test_start_brings_the_netvm_up_first(tool):
    err = _ok(tool("qvm-start", "-v", "work")).err.splitlines()
    assert err.index("vm.sys-net: started") < err.index("vm.work: starting")


def test_uri_option_names_the_node_file(tool, states, tmp_path):
    node = tmp_path / "other" / "node.xml"
    node.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUBES_")}
    uri = f"test://{node}"
    _ok(tool("qvm-start", "--uri", uri, "fedora-41", env=env))
    assert states("--uri", uri, env=env)["fedora-41"] == "Running"
    assert _engine_states(node) == {"fedora-41": libvirt.VIR_DOMAIN_RUNNING}
    assert not (tmp_path / "libvirt-node.xml").exists()


def test_pause_and_unpause_are_seen_by_the_next_process(tool, states):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-pause", "work"))
    assert states()["work"] == "Paused"
    _ok(tool("qvm-unpause", "work"))
    assert states()["work"] == "Running"


def test_killed_domain_is_halted_and_its_netvm_runs_on(tool, states):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-kill", "work"))
    assert states() == {**HALTED, "sys-net": "Running"}


def test_netvm_shutdown_is_refused_while_a_client_runs(tool, states):
    _ok(tool("qvm-start", "work"))
    result = tool("qvm-shutdown", "--wait", "sys-net")
    line = _one_line_error(result, "qvm-shutdown")
    assert "sys-net" in line
    assert "work" in line
    assert states()["sys-net"] == "Running"


def test_netvm_shutdown_with_force_is_done(tool, states):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-shutdown", "--wait", "--force", "sys-net"))
    assert states()["sys-net"] == "Halted"


def test_netvm_shutdown_after_its_client_stopped_is_done(tool, states):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-kill", "work"))
    _ok(tool("qvm-shutdown", "--wait", "--timeout", "10", "sys-net"))
    assert states() == HALTED


# -- the node file ---------------------------------------------------------


def _node_domains(node):
    root = lxml.etree.parse(str(node)).getroot()
    assert root.tag == "node"
    return {d.findtext("name"): d for d in root.findall("domain")}


def test_node_file_holds_each_defined_domain_with_its_run_state(
    tool, simulated_host
):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-pause", "work"))
    domains = _node_domains(simulated_host)
    assert sorted(domains) == ["sys-net", "work"]
    for domain in domains.values():
        assert domain.nsmap.get("test") == TEST_NS
        assert len(domain.findall(RUNSTATE)) == 1
    assert domains["sys-net"].findtext(RUNSTATE) == str(
        libvirt.VIR_DOMAIN_RUNNING
    )
    assert domains["work"].findtext(RUNSTATE) == str(libvirt.VIR_DOMAIN_PAUSED)


def test_node_file_is_read_back_by_libvirt_itself(tool, simulated_host):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-pause", "work"))
    assert _engine_states(simulated_host) == {
        "sys-net": libvirt.VIR_DOMAIN_RUNNING,
        "work": libvirt.VIR_DOMAIN_PAUSED,
    }


def test_a_domain_killed_in_a_later_process_leaves_no_definition(
    tool, simulated_host
):
    # Domains run transient: the file marks them so, and the next
    # process makes them transient again, so a stop leaves nothing.
    _ok(tool("qvm-start", "work"))
    domains = _node_domains(simulated_host)
    assert all(d.find(TRANSIENT) is not None for d in domains.values())
    _ok(tool("qvm-kill", "work"))
    assert sorted(_node_domains(simulated_host)) == ["sys-net"]
    _ok(tool("qvm-shutdown", "--wait", "sys-net"))
    assert _node_domains(simulated_host) == {}


def test_a_restart_in_a_later_process_runs_the_changed_domain(
    tool, simulated_host
):
    _ok(tool("qvm-start", "work"))
    _ok(tool("qvm-kill", "work"))
    _ok(tool("qvm-prefs", "work", "vcpus", "1"))
    _ok(tool("qvm-prefs", "work", "memory", "1234"))
    _ok(tool("qvm-start", "work"))
    conn = libvirt.open(f"test://{simulated_host}")
    try:
        state, max_kib, _, vcpus, _ = conn.lookupByName("work").info()
    finally:
        conn.close()
    assert (state, vcpus) == (libvirt.VIR_DOMAIN_RUNNING, 1)
    assert max_kib >= 1234 * 1024


def test_node_file_keeps_the_domains_uuids(tool, simulated_host, app):
    _ok(tool("qvm-start", "work"))
    domains = _node_domains(simulated_host)
    for name in ("work", "sys-net"):
        assert domains[name].findtext("uuid") == str(app.domains[name].uuid)


def test_reading_states_of_an_unused_host_creates_no_file(
    app, tool, simulated_host
):
    assert {vm.name: vm.get_power_state() for vm in app.domains} == HALTED
    _ok(tool("qvm-ls"))
    assert not simulated_host.exists()
    leftovers = [p.name for p in simulated_host.parent.iterdir()]
    assert not [n for n in leftovers if n.startswith("libvirt-node")]


# -- two views of one file in one process ----------------------------------


def test_change_made_elsewhere_is_not_lost_by_an_older_view(
    sample_path, simulated_host
):
    first = qubes.Qubes(str(sample_path))
    older = qubes.Qubes(str(sample_path))
    asyncio.run(first.domains["sys-net"].start())
    # The older view opens the host now, then the first one changes it.
    assert older.domains["sys-net"].get_power_state() == "Running"
    asyncio.run(first.domains["fedora-41"].start())
    asyncio.run(older.domains["sys-net"].kill())
    fresh = qubes.Qubes(str(sample_path))
    assert fresh.domains["fedora-41"].get_power_state() == "Running"
    assert fresh.domains["sys-net"].get_power_state() == "Halted"
    assert _engine_states(simulated_host) == {
        "fedora-41": libvirt.VIR_DOMAIN_RUNNING,
    }


def test_older_view_can_kill_a_domain_started_elsewhere(sample_path):
    first = qubes.Qubes(str(sample_path))
    older = qubes.Qubes(str(sample_path))
    asyncio.run(first.domains["fedora-41-dvm"].start())
    assert older.domains["fedora-41-dvm"].get_power_state() == "Running"
    asyncio.run(first.domains["work"].start())
    asyncio.run(older.domains["work"].kill())
    fresh = qubes.Qubes(str(sample_path))
    assert fresh.domains["work"].get_power_state() == "Halted"
    assert fresh.domains["fedora-41-dvm"].get_power_state() == "Running"


def test_older_view_reads_states_changed_elsewhere(sample_path):
    first = qubes.Qubes(str(sample_path))
    older = qubes.Qubes(str(sample_path))
    asyncio.run(first.domains["fedora-41"].start())
    assert older.domains["fedora-41"].get_power_state() == "Running"
    asyncio.run(first.domains["fedora-41"].kill())
    assert older.domains["fedora-41"].get_power_state() == "Halted"


# -- qvm-start --dry-run ---------------------------------------------------


def _dry_run_xml(result):
    assert result.err.startswith("backend ")
    return result.out


def test_dry_run_prints_valid_xml_and_starts_nothing(
    tool, states, simulated_host, validate_domain_xml
):
    result = _ok(tool("qvm-start", "--dry-run", "work"))
    xml = _dry_run_xml(result)
    validate_domain_xml(xml)
    root = lxml.etree.fromstring(xml)
    assert root.get("type") == "xen"
    assert root.findtext("name") == "work"
    assert states() == HALTED
    assert not simulated_host.exists()


@pytest.mark.parametrize(
    ("backend", "types"), [("kvm", {"kvm", "qemu"}), ("lxc", {"lxc"})]
)
def test_dry_run_prints_the_dialect_of_the_backend_asked_for(
    tool, simulated_host, validate_domain_xml, backend, types
):
    # --uri keeps the process on the simulated host: --backend alone
    # would mean the backend's system URI.
    uri = f"test://{simulated_host}"
    result = _ok(
        tool(
            "qvm-start", "--dry-run", "--backend", backend, "--uri", uri, "work"
        )
    )
    assert result.err.startswith(f"backend {backend} ")
    xml = _dry_run_xml(result)
    validate_domain_xml(xml)
    assert lxml.etree.fromstring(xml).get("type") in types


def test_dry_run_output_is_xml_whatever_the_paths(tmp_path, sample_path):
    # The backend's description (with the state file's path) is not in
    # the XML: a path with "--" in it would not be a valid comment.
    folder = tmp_path / "a--b"
    folder.mkdir()
    store = folder / "qubes.xml"
    store.write_bytes(sample_path.read_bytes())
    done = subprocess.run(
        [_script("qvm-start"), "--qubesxml", str(store), "--dry-run", "work"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "QUBES_LIBVIRT_URI": f"test://{folder}/node.xml"},
    )
    assert done.returncode == 0, done.stderr
    assert "a--b" in done.stderr
    assert lxml.etree.fromstring(done.stdout).findtext("name") == "work"


def test_dry_run_of_kvm_tells_the_guest_its_name(tool, simulated_host):
    uri = f"test://{simulated_host}"
    result = _ok(
        tool("qvm-start", "--dry-run", "--backend", "kvm", "--uri", uri, "work")
    )
    root = lxml.etree.fromstring(_dry_run_xml(result))
    assert "qubes.name=work" in root.findtext("os/cmdline").split()


def test_dry_run_of_lxc_for_an_hvm_domain_is_one_line_error(
    tool, simulated_host
):
    uri = f"test://{simulated_host}"
    result = tool(
        "qvm-start", "--dry-run", "--backend", "lxc", "--uri", uri, "sys-net"
    )
    line = _one_line_error(result, "qvm-start")
    assert "sys-net" in line
    assert "hvm" in line
    assert "<domain" not in result.out


def test_concurrent_starts_of_one_domain_leave_it_running(sample_path, states):
    """Two processes starting work at once: one starts it, the other is
    told it runs already; neither undoes the other's start."""
    for _ in range(4):
        procs = [
            subprocess.Popen(
                [_script("qvm-start"), "--qubesxml", str(sample_path), "work"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        for code, err in results:
            if code:
                assert "already running" in err
                assert "Traceback" not in err
        now = states()
        assert now["work"] == "Running"
        assert now["sys-net"] == "Running"
        kill = subprocess.run(
            [_script("qvm-kill"), "--qubesxml", str(sample_path), "work"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert kill.returncode == 0, kill.stderr


@pytest.mark.parametrize(
    "part",
    [
        "<domain file='/etc/passwd'/>",
        "<interface file='/etc/hostname'/>",
        "<nodedev/>",
    ],
)
def test_a_state_file_that_points_elsewhere_is_refused(
    tool, simulated_host, part
):
    simulated_host.write_text(
        "<node><cpu><nodes>1</nodes></cpu><memory>8388608</memory>"
        + part
        + "</node>"
    )
    before = simulated_host.read_bytes()
    result = tool("qvm-ls")
    assert result.code == 1
    assert "not a simulated host's state file" in result.err
    assert "root:" not in result.err
    assert "Traceback" not in result.err
    assert simulated_host.read_bytes() == before


def test_an_interrupt_after_everything_was_done_is_no_failure(
    tool, states, simulated_host, sample_path
):
    # The signal comes while qvm-start waits for the state file's lock;
    # once it has the lock the start runs to its end, and the tool says
    # that nothing was stopped.
    _ok(tool("qvm-start", "sys-net"))
    lock = os.open(f"{simulated_host}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        process = subprocess.Popen(
            [_script("qvm-start"), "--qubesxml", str(sample_path), "work"],
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)  # it is waiting for the lock by now
        process.send_signal(signal.SIGINT)
        time.sleep(0.2)
    finally:
        os.close(lock)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err == "qvm-start: interrupted after every domain was done\n"
    assert states()["work"] == "Running"


def test_the_store_named_as_state_file_is_left_alone(tool, sample_path):
    # A mistake in the URI: the message must not advise removing it.
    before = sample_path.read_bytes()
    result = tool("qvm-ls", "--uri", f"test://{sample_path}")
    line = _one_line_error(result, "qvm-ls")
    assert "check the URI" in line
    assert "remove" not in line
    assert sample_path.read_bytes() == before


def test_a_state_file_in_a_missing_folder_says_so(tool, tmp_path):
    uri = f"test://{tmp_path}/nowhere/node.xml"
    line = _one_line_error(tool("qvm-start", "--uri", uri, "work"), "qvm-start")
    assert f"there is no folder {tmp_path}/nowhere" in line
