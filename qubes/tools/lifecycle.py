"""qvm-start, qvm-shutdown, qvm-kill, qvm-pause, qvm-unpause.

Each acts on the domains it is given, in order, and stops at the first
error; or with ``--all`` on every domain but dom0 the action applies to
(``qvm-shutdown --all`` shuts clients down before their netvm).
``qvm-start --dry-run`` prints the libvirt XML that would be started.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import lxml.etree

from qubes.tools import QubesArgumentParser, load_app, run
from qubes.tools.selection import add_domain_arguments, chosen, netvms_last

__all__ = ["start", "shutdown", "kill", "pause", "unpause"]


def seconds(text: str) -> float:
    """A positive number of seconds (argparse names the type after this
    function in its errors: "invalid seconds value")."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"not a positive number: {text}")
    return value


def _parser(prog: str, description: str, what: str) -> QubesArgumentParser:
    parser = QubesArgumentParser(prog=prog, description=description)
    add_domain_arguments(parser, what)
    parser.set_defaults(prog=prog)
    return parser


#: which domains ``--all`` takes, for each action
_APPLIES: dict[str, Callable[[Any], bool]] = {
    "start": lambda vm: vm.is_halted(),
    "shutdown": lambda vm: vm.is_running(),
    "kill": lambda vm: not vm.is_halted(),
    "pause": lambda vm: vm.get_power_state() == "Running",
    "unpause": lambda vm: vm.is_paused(),
}


def _run_each(args: argparse.Namespace, action: str, **kwargs: Any) -> int:
    app = load_app(args)
    vms = chosen(app, args, _APPLIES[action])
    done: list[str] = []

    async def act() -> None:
        # A netvm named after one of its clients comes up with that
        # client: at its turn it runs, and is done.
        halted = {v for v in vms if v.is_halted()} if action == "start" else ()
        for vm in vms:
            if not (vm in halted and not vm.is_halted()):
                await getattr(vm, action)(**kwargs)
            done.append(vm.name)
            # A step on the simulated host never waits: give an
            # interrupt its chance between two domains.
            await asyncio.sleep(0)

    return _run(args, act(), [vm.name for vm in vms], done)


def _shutdown(args: argparse.Namespace) -> int:
    if not args.all:
        return _run_each(
            args,
            "shutdown",
            force=args.force,
            wait=args.wait,
            timeout=args.timeout,
        )
    app = load_app(args)
    vms = chosen(app, args, _APPLIES["shutdown"])
    rounds = netvms_last(vms)
    done: list[str] = []

    async def act() -> None:
        # A round's netvms go down once their clients, one round before,
        # have halted.
        for number, round_vms in enumerate(rounds):
            wait = args.wait or number < len(rounds) - 1
            await asyncio.gather(
                *(_shut(vm, wait, args, done) for vm in round_vms)
            )

    return _run(args, act(), [vm.name for vm in vms], done)


async def _shut(
    vm: Any, wait: bool, args: argparse.Namespace, done: list[str]
) -> None:
    await vm.shutdown(force=args.force, wait=wait, timeout=args.timeout)
    done.append(vm.name)


def _run(
    args: argparse.Namespace,
    action: Coroutine[Any, Any, None],
    names: list[str],
    done: list[str],
) -> int:
    """Run *action*; the exit status, and on an interrupt what of
    *names* was *done*."""
    try:
        asyncio.run(action)
    except KeyboardInterrupt:
        return _interrupted(args, names, done)
    return 0


def _interrupted(
    args: argparse.Namespace, names: list[str], done: list[str]
) -> int:
    # An interrupt is only seen between two steps: it may come when
    # every domain is done already, and then nothing was stopped.
    prog = args.prog
    left = [name for name in names if name not in done]
    if not left:
        print(
            f"{prog}: interrupted after every domain was done", file=sys.stderr
        )
        return 0
    print(
        f"{prog}: interrupted; done: {', '.join(done) or 'none'}; "
        f"not done: {', '.join(left)}",
        file=sys.stderr,
    )
    return 130


def _start(args: argparse.Namespace) -> int:
    if not args.dry_run:
        return _run_each(args, "start")
    app = load_app(args)
    vms = chosen(app, args, _APPLIES["start"])
    configs = [vm.create_config_file() for vm in vms]
    # Which backend made it goes to stderr: stdout is the XML alone, one
    # document a domain, to be saved or given to virsh as it is.
    print(app.backend.describe(), file=sys.stderr)
    for xml in configs:
        tree = lxml.etree.fromstring(xml.encode())
        print(lxml.etree.tostring(tree, pretty_print=True).decode(), end="")
    return 0


def start(argv: Sequence[str] | None = None) -> int:
    """qvm-start: start domains, each after its netvm chain."""
    parser = _parser(
        "qvm-start", "Start domains (their netvm first).", "halted"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the domain XML instead of starting (one document "
        "per domain; the backend that made it on stderr)",
    )
    return run(parser, _start, argv)


def shutdown(argv: Sequence[str] | None = None) -> int:
    """qvm-shutdown: ask domains to shut down."""
    parser = _parser("qvm-shutdown", "Shut domains down.", "running")
    parser.add_argument(
        "--wait", action="store_true", help="return once every domain is halted"
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=0,
        metavar="SEC",
        help="seconds to wait (default: shutdown_timeout)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="shut a netvm down even under running clients",
    )
    return run(parser, _shutdown, argv)


def kill(argv: Sequence[str] | None = None) -> int:
    """qvm-kill: stop domains at once."""
    parser = _parser("qvm-kill", "Stop domains at once.", "not halted")
    return run(parser, lambda args: _run_each(args, "kill"), argv)


def pause(argv: Sequence[str] | None = None) -> int:
    """qvm-pause: freeze domains."""
    parser = _parser("qvm-pause", "Pause domains.", "running")
    return run(parser, lambda args: _run_each(args, "pause"), argv)


def unpause(argv: Sequence[str] | None = None) -> int:
    """qvm-unpause: let paused domains run."""
    parser = _parser("qvm-unpause", "Unpause domains.", "paused")
    return run(parser, lambda args: _run_each(args, "unpause"), argv)
