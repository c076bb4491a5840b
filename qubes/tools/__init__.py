"""Shared parts of the ``qvm-*`` command-line tools.

Every tool takes ``--qubesxml PATH`` (default: ``QUBES_XML_PATH``, else
the system or per-user store), reports an error as one line on stderr
with a non-zero exit status, and never shows a traceback for an error
of the package: a :mod:`qubes.exc` error exits 1, bad usage exits 2.
"""

from __future__ import annotations

import argparse
import logging
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
        self.add_argument(
            "--backend",
            metavar="NAME",
            help="xen, kvm or lxc (default: $QUBES_BACKEND, the store's "
            "vmm_backend, else auto-detected)",
        )
        self.add_argument(
            "--verbose",
            "-v",
            action="count",
            default=0,
            help="say more: -v what changes state, -vv also each engine call, "
            "event and the XML sent",
        )
        self.add_argument(
            "--uri",
            metavar="URI",
            help="libvirt URI (default: $QUBES_LIBVIRT_URI, the store's "
            "vmm_uri, else the backend's own)",
        )


def load_app(args: argparse.Namespace) -> Any:
    """Load the store the options name, with the backend they name."""
    import qubes

    if args.qubesxml == "":
        raise exc.QubesValueError("--qubesxml names no file")
    app = qubes.Qubes(args.qubesxml)
    if getattr(args, "backend", None) or getattr(args, "uri", None):
        app.use_backend(args.backend, args.uri)
    return app


def run(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None,
) -> int:
    """Parse *argv* and call *body*, turning errors into one line.

    :returns: the exit status
    """
    args = parser.parse_args(argv)
    _set_up_logging(getattr(args, "verbose", 0))
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


def _set_up_logging(verbose: int) -> None:
    # Errors reach the user once, as the tool's one-line message; the
    # log says more only when asked.
    level = {0: logging.ERROR + 10, 1: logging.INFO}.get(verbose, logging.DEBUG)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    # asyncio's own debug lines say nothing about domains.
    logging.getLogger("asyncio").setLevel(logging.WARNING)


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
