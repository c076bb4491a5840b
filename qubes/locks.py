"""Locks between processes that share a store and an engine.

Two ``qvm-start work`` at once must not both prepare work's volumes:
the second would overwrite the root snapshot the first one's guest
already runs on. A domain's start therefore holds a lock file of its
own, ``locks/UUID.lock`` in the store's folder, from the check that it
is halted to the end of the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from typing import Any

from qubes import exc

__all__ = ["domain_lock", "LOCK_WAIT"]

#: seconds a start waits for another process's start of the same domain
LOCK_WAIT = 120.0


@contextlib.asynccontextmanager
async def domain_lock(
    folder: str, vm: Any, wait: float = LOCK_WAIT
) -> AsyncIterator[None]:
    """Hold *vm*'s lock file below *folder* for the duration.

    :raises QubesVMError: another process held it for *wait* seconds
    """
    locks = os.path.join(folder, "locks")
    path = os.path.join(locks, f"{vm.uuid}.lock")
    try:
        os.makedirs(locks, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise exc.QubesStoreError(
            f"cannot open the domain's lock file: {err.strerror}", path=path
        ) from err
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if loop.time() > deadline:
                    raise exc.QubesVMError(
                        vm, f"another process has held its lock for {wait:g} s"
                    ) from None
                await asyncio.sleep(0.05)
        yield
    finally:
        os.close(fd)
