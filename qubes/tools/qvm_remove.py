"""qvm-remove: remove domains from the store.

It asks for confirmation unless given ``--force``. A domain that another
one still refers to (as template, netvm, default_dispvm, device
backend...) or that a global property names is not removed; nothing is
removed unless every named domain can be.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from qubes import exc
from qubes.tools import QubesArgumentParser, load_app, run

__all__ = ["main"]


def get_parser() -> QubesArgumentParser:
    """The tool's argument parser."""
    parser = QubesArgumentParser(
        prog="qvm-remove", description="Remove domains."
    )
    parser.add_argument(
        "--force", "-f", action="store_true", help="do not ask for confirmation"
    )
    parser.add_argument("domains", nargs="+", metavar="VMNAME")
    return parser


def _confirm(names: list[str]) -> bool:
    print("This will completely remove the selected domain(s):")
    for name in names:
        print("  " + name)
    print("Are you sure? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _body(args: argparse.Namespace) -> int:
    app = load_app(args)
    vms = [app.domains[name] for name in args.domains]
    if not args.force and not _confirm([vm.name for vm in vms]):
        print("Nothing removed.")
        return 1
    for vm in vms:
        if vm.qid == 0:
            raise exc.QubesVMInUseError(vm, "dom0 cannot be removed")
        if vm.is_running():
            raise exc.QubesVMNotHaltedError(vm, "is running; stop it first")
        del app.domains[vm]
    # The store first: a domain whose volumes could not all be removed is
    # gone from the store all the same, and says which were left.
    app.save()
    for vm in vms:
        asyncio.run(vm.remove_from_disk())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    return run(get_parser(), _body, argv)
