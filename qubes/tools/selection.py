"""Which domains a lifecycle tool acts on: the names given, or ``--all``
(every domain but dom0 that the action applies to) less ``--exclude``,
as the Qubes tools take them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from qubes import exc

__all__ = ["add_domain_arguments", "chosen", "netvms_last"]


def add_domain_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """VMNAME..., ``--all`` and ``--exclude``.

    :param what: which domains ``--all`` takes, for the help
    """
    parser.add_argument("domains", nargs="*", metavar="VMNAME")
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"every domain but dom0 that is {what}",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="VMNAME",
        help="with --all: leave this domain out (may be given again)",
    )


def chosen(
    app: Any, args: argparse.Namespace, applies: Callable[[Any], bool]
) -> list[Any]:
    """The domains named, in order; or with ``--all``, those *applies*
    accepts, dom0 and the excluded left out.

    :raises QubesValueError: names and ``--all`` together, neither, or
        ``--exclude`` without ``--all``
    :raises QubesVMNotFoundError: a name (also an excluded one) is not a
        domain of the store
    """
    if args.all and args.domains:
        raise exc.QubesValueError("give domain names or --all, not both")
    if args.exclude and not args.all:
        raise exc.QubesValueError("--exclude goes with --all")
    if not args.all:
        if not args.domains:
            raise exc.QubesValueError("name at least one domain, or --all")
        return [app.domains[name] for name in args.domains]
    left_out = {app.domains[name] for name in args.exclude}
    return [
        vm
        for vm in app.domains
        if vm.klass != "AdminVM" and vm not in left_out and applies(vm)
    ]


def netvms_last(vms: list[Any]) -> list[list[Any]]:
    """*vms* in rounds: each domain in a later round than every domain of
    *vms* whose netvm it is (so clients go down before their netvm)."""
    clients: dict[Any, list[Any]] = {}
    for vm in vms:
        netvm = getattr(vm, "netvm", None)
        if netvm is not None:
            clients.setdefault(netvm, []).append(vm)
    depth: dict[Any, int] = {}

    def depth_of(vm: Any) -> int:
        # netvm loops are refused by the model: the recursion ends.
        if vm not in depth:
            below = [depth_of(c) for c in clients.get(vm, [])]
            depth[vm] = 1 + max(below) if below else 0
        return depth[vm]

    rounds: dict[int, list[Any]] = {}
    for vm in vms:
        rounds.setdefault(depth_of(vm), []).append(vm)
    return [rounds[level] for level in sorted(rounds)]
