"""Shared parts of the ``qvm-*`` command-line tools.

Every tool takes ``--qubesxml PATH`` (default: ``QUBES_XML_PATH``, else
the system or per-user store), reports an error as one line on stderr
with a non-zero exit status, and never shows a traceback for an error
of the package: a :mod:`qubes.exc` error exits 1, bad usage exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from qubes import exc

__all__ = ["QubesArgumentParser", "run", "display"]


class QubesArgumentParser(argparse.ArgumentParser):
    """An argument parser with the options every tool shares."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_argument(
            "--qubesxml",
            metavar="PATH",
            help="the qubes.xml store (default: $QUBES_XML_PATH, "
            "/var/lib/qubes/qubes.xml for root, else a per-user file)",
        )


def load_app(args: argparse.Namespace) -> Any:
    """Load the store the options name."""
    import qubes

    return qubes.Qubes(args.qubesxml)


def run(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    """Parse *argv* and call *body*, turning errors into one line.

    :returns: the exit status
    """
    args = parser.parse_args(argv)
    try:
        return body(args) or 0
    except exc.QubesException as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def display(value: Any) -> str:
    """How a property value is shown: domains and labels by name,
    ``None`` as ``-``... and tuples as space-separated words."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, tuple | list):
        return " ".join(display(v) for v in value) or "-"
    name = getattr(value, "name", None)
    if name is not None and not isinstance(value, str):
        return str(name)
    return str(value)
