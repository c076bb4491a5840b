"""qvm-features: show or change a domain's features.

qvm-features VM                  every feature and its value
qvm-features VM FEATURE          one value
qvm-features VM FEATURE VALUE    set it
qvm-features --unset VM FEATURE  remove it
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from qubes import exc
from qubes.tools import QubesArgumentParser, load_app, run

__all__ = ["main"]


def get_parser() -> QubesArgumentParser:
    """The tool's argument parser."""
    parser = QubesArgumentParser(
        prog="qvm-features", description="Show or change a domain's features."
    )
    parser.add_argument(
        "--unset",
        "--default",
        "--delete",
        "-D",
        dest="unset",
        action="store_true",
        help="remove the feature",
    )
    parser.add_argument("domain", metavar="VMNAME")
    parser.add_argument("feature", metavar="FEATURE", nargs="?")
    parser.add_argument("value", metavar="VALUE", nargs="?")
    return parser


def _body(args: argparse.Namespace) -> int:
    app = load_app(args)
    vm = app.domains[args.domain]
    if args.feature is None:
        if args.unset:
            raise exc.QubesValueError("--unset needs a feature name")
        width = max((len(name) for name in vm.features), default=0)
        for name, value in vm.features.items():
            print(f"{name.ljust(width)}  {value}")
        return 0
    if args.unset:
        if args.value is not None:
            raise exc.QubesValueError("--unset takes no value")
        del vm.features[args.feature]
    elif args.value is not None:
        vm.features[args.feature] = args.value
    else:
        print(vm.features[args.feature])
        return 0
    app.save()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    return run(get_parser(), _body, argv)
