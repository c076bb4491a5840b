"""qubes-create: make a new, empty store (labels, pools and dom0)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from qubes.tools import QubesArgumentParser, run

__all__ = ["main"]


def get_parser() -> QubesArgumentParser:
    """The tool's argument parser."""
    return QubesArgumentParser(
        prog="qubes-create",
        description="Create a new qubes.xml with dom0, the standard "
        "labels, a file pool and a kernel pool.",
    )


def _body(args: argparse.Namespace) -> int:
    from qubes.app import Qubes

    app = Qubes.create_empty_store(args.qubesxml)
    print(app.path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the exit status."""
    return run(get_parser(), _body, argv)
