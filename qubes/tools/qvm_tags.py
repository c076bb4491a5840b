"""qvm-tags: list, add or remove a domain's tags.

qvm-tags VM [list [TAG]]     the tags (or whether it has TAG)
qvm-tags VM add TAG...       add tags
qvm-tags VM del TAG...       remove tags
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from qubes import exc
from qubes.tools import QubesArgumentParser, load_app, run

__all__ = ["main"]

ACTIONS = {
    "list": "list",
    "ls": "list",
    "l": "list",
    "add": "add",
    "a": "add",
    "set": "add",
    "del": "del",
    "d": "del",
    "unset": "del",
    "u": "del",
}


def get_parser() -> QubesArgumentParser:
    """The tool's argument parser."""
    parser = QubesArgumentParser(
        prog="qvm-tags", description="List, add or remove a domain's tags."
    )
    parser.add_argument("domain", metavar="VMNAME")
    parser.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=sorted(ACTIONS),
        metavar="ACTION",
        help="list (default; also ls, l), add (a, set) or del (d, unset, u); "
        "list TAG exits 1 when the domain does not carry TAG",
    )
    parser.add_argument("tags", nargs="*", metavar="TAG")
    return parser


def _body(args: argparse.Namespace) -> int:
    app = load_app(args)
    vm = app.domains[args.domain]
    action = ACTIONS[args.action]
    if action == "list":
        if len(args.tags) > 1:
            raise exc.QubesValueError("list takes at most one tag")
        if args.tags:
            present = args.tags[0] in vm.tags
            if present:
                print(args.tags[0])
            return 0 if present else 1
        for tag in sorted(vm.tags):
            print(tag)
        return 0
    if not args.tags:
        raise exc.QubesValueError(f"{args.action} needs at least one tag")
    for tag in args.tags:
        if action == "add":
            vm.tags.add(tag)
        else:
            vm.tags.remove(tag)
    app.save()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    return run(get_parser(), _body, argv)
