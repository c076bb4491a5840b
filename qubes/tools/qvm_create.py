"""qvm-create: add a new domain to the store.

qvm-create --class AppVM --label red [--template T] NAME
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from qubes import exc
from qubes.tools import QubesArgumentParser, load_app, run
from qubes.vm.dispvm import MAX_DISPID

__all__ = ["main"]


def get_parser() -> QubesArgumentParser:
    """The tool's argument parser."""
    parser = QubesArgumentParser(
        prog="qvm-create", description="Create a new domain."
    )
    parser.add_argument(
        "--class",
        "-C",
        dest="klass",
        default="AppVM",
        metavar="CLASS",
        help="AppVM (default), TemplateVM, StandaloneVM, DispVM",
    )
    parser.add_argument(
        "--label",
        "-l",
        required=True,
        help="the domain's label (red, blue, ...)",
    )
    parser.add_argument(
        "--template", "-t", help="the template, for an AppVM or DispVM"
    )
    parser.add_argument(
        "--property",
        "--prop",
        "-p",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a property (may be repeated)",
    )
    parser.add_argument("name", metavar="VMNAME")
    return parser


def _properties(args: argparse.Namespace, cls: Any) -> dict[str, str]:
    props: dict[str, str] = {}
    for item in args.property:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise exc.QubesValueError(
                f"--property wants NAME=VALUE, not {item!r}"
            )
        cls.property_get_def(name)
        if name in ("name", "label", "template"):
            raise exc.QubesValueError(
                f"give {name} with its own option, not as --property"
            )
        props[name] = value
    return props


def _dispid(app: Any, name: str) -> int:
    # A DispVM called dispN is DispVM number N, when that one is free.
    number = name[len("disp") :]
    if name.startswith("disp") and number.isascii() and number.isdigit():
        wanted = int(number)
        if not 1 <= wanted <= MAX_DISPID:
            return int(app.domains.get_new_unused_dispid(9999))
        used = {vm._property_values.get("dispid") for vm in app.domains}
        if wanted not in used:
            return wanted
    return int(app.domains.get_new_unused_dispid(9999))


def _body(args: argparse.Namespace) -> int:
    app = load_app(args)
    cls = app.get_vm_class(args.klass)
    props = _properties(args, cls)
    if args.template is not None:
        if "template" not in cls._property_index:
            raise exc.QubesValueError(
                f"a {args.klass} has no template", prop="template"
            )
        props["template"] = args.template
    if args.klass == "DispVM" and "dispid" not in props:
        props["dispid"] = str(_dispid(app, args.name))
    vm = app.add_new_vm(cls, name=args.name, label=args.label, **props)
    # As Qubes tags a domain with who made it; these tools are dom0's.
    vm.tags.add("created-by-dom0")
    asyncio.run(vm.create_on_disk())
    app.save()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    return run(get_parser(), _body, argv)
