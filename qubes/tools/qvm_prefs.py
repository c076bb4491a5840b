"""qvm-prefs: show or change a domain's properties.

    qvm-prefs VM                 every property: name, D if default, value
    qvm-prefs VM PROP            one value
    qvm-prefs VM PROP VALUE      set it
    qvm-prefs --default VM PROP  reset it to its default

``qubes-prefs`` does the same for the store's global properties.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from qubes import exc
from qubes.tools import QubesArgumentParser, display, load_app, run

__all__ = ["main", "main_global"]


def get_parser(
    prog: str = "qvm-prefs", domain: bool = True
) -> QubesArgumentParser:
    """The tool's argument parser (*domain* false: ``qubes-prefs``)."""
    what = "a domain's" if domain else "the store's global"
    parser = QubesArgumentParser(
        prog=prog, description=f"Show or change {what} properties."
    )
    parser.add_argument(
        "--hide-default",
        action="store_true",
        help="list only properties that are set",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--get",
        "-g",
        action="store_true",
        help="show the value (the default action)",
    )
    action.add_argument(
        "--set", "-s", action="store_true", help="set the value"
    )
    action.add_argument(
        "--default",
        "-D",
        action="store_true",
        help="reset the property to its default",
    )
    if domain:
        parser.add_argument("domain", metavar="VMNAME")
    parser.add_argument("property", metavar="PROPERTY", nargs="?")
    parser.add_argument("value", metavar="VALUE", nargs="?")
    return parser


def _value(holder: Any, name: str) -> str:
    try:
        return display(getattr(holder, name))
    except AttributeError:
        return "-"


def _list(holder: Any, hide_default: bool) -> None:
    props = sorted(holder.property_list(), key=lambda p: p.__name__)
    width = max(len(p.__name__) for p in props)
    for prop in props:
        name = prop.__name__
        default = holder.property_is_default(name)
        if default and hide_default:
            continue
        mark = "D" if default else "-"
        print(f"{name.ljust(width)}  {mark}  {_value(holder, name)}")


def _do(app: Any, holder: Any, args: argparse.Namespace) -> int:
    try:
        return _act(app, holder, args)
    except exc.QubesException as err:
        err.locate(domain=holder.location_name())
        raise


def _act(app: Any, holder: Any, args: argparse.Namespace) -> int:
    if args.property is None:
        if args.set or args.default:
            raise exc.QubesValueError("a property name is needed")
        _list(holder, args.hide_default)
        return 0
    prop = holder.property_get_def(args.property)
    if args.get and args.value is not None:
        raise exc.QubesValueError("--get takes no value")
    if args.default:
        if args.value is not None:
            raise exc.QubesValueError("--default takes no value")
        holder.property_reset(prop.__name__)
    elif args.value is not None:
        holder.property_set(prop.__name__, args.value)
    elif args.set:
        raise exc.QubesValueError("--set needs a value")
    else:
        value = getattr(holder, prop.__name__)
        print("" if value is None else display(value))
        return 0
    app.save()
    return 0


def _body_domain(args: argparse.Namespace) -> int:
    app = load_app(args)
    return _do(app, app.domains[args.domain], args)


def _body_global(args: argparse.Namespace) -> int:
    app = load_app(args)
    return _do(app, app, args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run qvm-prefs; returns the exit status."""
    return run(get_parser(), _body_domain, argv)


def main_global(argv: Sequence[str] | None = None) -> int:
    """Run qubes-prefs; returns the exit status."""
    return run(get_parser("qubes-prefs", domain=False), _body_global, argv)
