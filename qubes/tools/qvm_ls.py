"""qvm-ls: list domains and their state, class, label, template, netvm."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from qubes import exc, plugins
from qubes.tools import QubesArgumentParser, display, load_app, run

__all__ = ["main", "COLUMNS", "FORMATS"]


def _attr(name: str) -> Callable[[Any], Any]:
    return lambda vm: getattr(vm, name, None)


#: column name -> how to read it from a domain
COLUMNS: dict[str, Callable[[Any], Any]] = {
    "NAME": _attr("name"),
    "STATE": lambda vm: vm.get_power_state(),
    "CLASS": _attr("klass"),
    "LABEL": _attr("label"),
    "TEMPLATE": _attr("template"),
    "NETVM": _attr("netvm"),
    "QID": _attr("qid"),
    "UUID": _attr("uuid"),
    "IP": _attr("visible_ip"),
    "IPBACK": _attr("gateway"),
    "GATEWAY": _attr("visible_gateway"),
    "MAC": _attr("mac"),
    "MEMORY": _attr("memory"),
    "MAXMEM": _attr("maxmem"),
    "VCPUS": _attr("vcpus"),
    "VIRT_MODE": _attr("virt_mode"),
    "KERNEL": _attr("kernel"),
    "KERNELOPTS": _attr("kernelopts"),
    "TAGS": lambda vm: sorted(vm.tags),
}

FORMATS = {
    "simple": ("NAME", "STATE", "CLASS", "LABEL", "TEMPLATE", "NETVM"),
    "network": ("NAME", "STATE", "NETVM", "IP", "IPBACK", "GATEWAY"),
    "kernel": ("NAME", "STATE", "CLASS", "TEMPLATE", "KERNEL", "KERNELOPTS"),
    "full": (
        "NAME",
        "STATE",
        "CLASS",
        "LABEL",
        "QID",
        "UUID",
        "TEMPLATE",
        "NETVM",
        "MEMORY",
        "MAXMEM",
        "VCPUS",
        "VIRT_MODE",
        "IP",
    ),
}

STATES = ("running", "paused", "halted")


def get_parser() -> QubesArgumentParser:
    """The tool's argument parser."""
    parser = QubesArgumentParser(
        prog="qvm-ls", description="List domains and their properties."
    )
    parser.add_argument(
        "domains", nargs="*", metavar="VMNAME", help="list only these domains"
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="VMNAME",
        help="leave this domain out",
    )
    parser.add_argument(
        "--format",
        "-o",
        choices=sorted(FORMATS),
        default="simple",
        help="a predefined set of columns",
    )
    parser.add_argument(
        "--fields",
        "-O",
        metavar="FIELD,...",
        help="columns to show, comma-separated: "
        + ", ".join(COLUMNS)
        + ", or any property name",
    )
    _add_filters(parser)
    parser.add_argument(
        "--backend-info",
        action="store_true",
        help="say which backend and URI are used, and why",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--raw-list", action="store_true", help="only the names, one per line"
    )
    output.add_argument(
        "--raw-data",
        action="store_true",
        help="no header, fields separated by '|'",
    )
    return parser


def _add_filters(parser: QubesArgumentParser) -> None:
    """Which domains to list: by tag, class and state."""
    parser.add_argument(
        "--tags",
        action="append",
        default=[],
        metavar="TAG",
        help="only domains with this tag",
    )
    parser.add_argument(
        "--class",
        dest="klass",
        metavar="CLASS",
        help="only domains of this class",
    )
    for state in STATES:
        parser.add_argument(
            f"--{state}", action="store_true", help=f"only {state} domains"
        )


def _columns(args: argparse.Namespace) -> list[str]:
    if not args.fields:
        return list(FORMATS[args.format])
    names = [f.strip().upper() for f in args.fields.split(",") if f.strip()]
    if not names:
        raise exc.QubesValueError("--fields names no field")
    return names


def _getter(column: str, app: Any) -> Callable[[Any], Any]:
    if column in COLUMNS:
        return COLUMNS[column]
    prop = column.lower()
    classes = [app.get_vm_class(n) for n in plugins.names(plugins.GROUP_VM)]
    if any(prop in cls._property_index for cls in classes):
        return _attr(prop)
    raise exc.QubesValueError(f"unknown field {column.lower()!r}")


def _backend_info(app: Any) -> None:
    # Which backend and why is worth saying even when its engine cannot
    # be reached (a backend names its engine only once it asked it).
    backend = app.backend
    try:
        line = backend.describe()
    except exc.QubesConnectionError:
        print(f"backend {backend.name}, URI {backend.uri}")
        print(app.backend_reason)
        raise
    print(line)
    print(app.backend_reason)


def _select(app: Any, args: argparse.Namespace) -> list[Any]:
    vms = [app.domains[n] for n in args.domains] or list(app.domains)
    excluded = {app.domains[n] for n in args.exclude}
    vms = [vm for vm in vms if vm not in excluded]
    if args.klass:
        app.get_vm_class(args.klass)
        vms = [vm for vm in vms if vm.klass == args.klass]
    for tag in args.tags:
        vms = [vm for vm in vms if tag in vm.tags]
    wanted = {s.capitalize() for s in STATES if getattr(args, s)}
    if wanted:
        vms = [vm for vm in vms if vm.get_power_state() in wanted]
    return sorted(vms, key=lambda vm: (vm.qid != 0, vm.name))


def _print_table(rows: list[list[str]], raw: bool) -> None:
    if raw:
        for row in rows[1:]:
            print("|".join(row))
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ]
        print("  ".join(cells).rstrip())


def _body(args: argparse.Namespace) -> int:
    app = load_app(args)
    if args.backend_info:
        _backend_info(app)
        return 0
    vms = _select(app, args)
    if args.raw_list:
        if args.fields or args.format != "simple":
            raise exc.QubesValueError(
                "--raw-list prints names only; --fields and --format "
                "do not go with it"
            )
        for vm in vms:
            print(vm.name)
        return 0
    columns = _columns(args)
    getters = [_getter(column, app) for column in columns]
    rows = [columns]
    rows.extend([display(get(vm)) for get in getters] for vm in vms)
    _print_table(rows, args.raw_data)
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    return run(get_parser(), _body, argv)
