"""``app.domains``: the domains of a store, looked up in constant time.

Three indexes are kept in step: by qid, by name and by UUID (all three
write-once on a domain), and the collection refuses a second domain with
the same qid, name or UUID.
Iteration follows the order of insertion, which for a loaded store is
the order of qubes.xml, so a file round-trips unchanged.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

from qubes import exc, generation
from qubes.vm import MAX_QID

__all__ = ["VMCollection"]


class VMCollection:
    """The domains of one store.

    :param app: the store; it receives ``domain-add``,
        ``domain-pre-delete`` and ``domain-delete`` events
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._by_qid: dict[int, Any] = {}
        self._by_name: dict[str, Any] = {}
        self._by_uuid: dict[uuid.UUID, Any] = {}

    def __repr__(self) -> str:
        return f"<VMCollection of {len(self)}>"

    def __len__(self) -> int:
        return len(self._by_qid)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._by_qid.values()))

    def values(self) -> list[Any]:
        """Every domain, in store order."""
        return list(self._by_qid.values())

    def keys(self) -> list[int]:
        """Every qid, in store order."""
        return list(self._by_qid)

    def _find(self, key: Any) -> Any:
        if isinstance(key, bool):
            return None
        if isinstance(key, int):
            return self._by_qid.get(key)
        if isinstance(key, str):
            vm = self._by_name.get(key)
            if vm is None and len(key) == 36:
                try:
                    return self._by_uuid.get(uuid.UUID(key))
                except ValueError:
                    return None
            return vm
        if isinstance(key, uuid.UUID):
            return self._by_uuid.get(key)
        qid = getattr(key, "_property_values", {}).get("qid")
        if qid is not None and self._by_qid.get(qid) is key:
            return key
        return None

    def __getitem__(self, key: Any) -> Any:
        """The domain with this qid (int), name or UUID (str or UUID).

        A domain object is accepted too, and returned if it belongs here.

        :raises QubesVMNotFoundError: no such domain
        """
        vm = self._find(key)
        if vm is None:
            raise exc.QubesVMNotFoundError(f"no such domain: {key!s}")
        return vm

    def get(self, key: Any, default: Any = None) -> Any:
        """Like :meth:`__getitem__`, with *default* for a missing domain."""
        vm = self._find(key)
        return default if vm is None else vm

    def __contains__(self, key: Any) -> bool:
        return self._find(key) is not None

    def add(self, vm: Any) -> Any:
        """Add *vm* and return it.

        :raises QubesDuplicateError: its qid, name or UUID is taken
        """
        qid, name, vm_uuid = vm.qid, vm.name, vm.uuid
        for index, key, what in (
            (self._by_qid, qid, "qid"),
            (self._by_name, name, "name"),
            (self._by_uuid, vm_uuid, "UUID"),
        ):
            other = index.get(key)
            if other is not None:
                raise exc.QubesDuplicateError(
                    f"{what} {key} is already used by another domain "
                    f"(qid {other.qid}, named {other.name!r})",
                    domain=name,
                )
        self._by_qid[qid] = vm
        self._by_name[name] = vm
        self._by_uuid[vm_uuid] = vm
        generation.bump()
        self.app.fire_event("domain-add", vm=vm)
        return vm

    def __delitem__(self, key: Any) -> None:
        """Remove a domain nothing refers to.

        :raises QubesVMInUseError: another domain or a global property
            still refers to it, or it is dom0
        """
        vm = self[key]
        if vm.qid == 0:
            raise exc.QubesVMInUseError(vm, "dom0 cannot be removed")
        users = self.app.references_to(vm)
        if users:
            raise exc.QubesVMInUseError(
                vm, "still referred to by " + ", ".join(users)
            )
        self.app.fire_event("domain-pre-delete", pre_event=True, vm=vm)
        del self._by_qid[vm.qid]
        del self._by_name[vm.name]
        del self._by_uuid[vm.uuid]
        generation.bump()
        self.app.fire_event("domain-delete", vm=vm)

    def get_new_unused_qid(self) -> int:
        """The lowest qid no domain uses.

        :raises QubesException: every qid is taken
        """
        for qid in range(1, MAX_QID + 1):
            if qid not in self._by_qid:
                return qid
        raise exc.QubesException("no free qid left")

    def get_new_unused_dispid(self, limit: int) -> int:
        """A random dispid in 1..*limit* that no DispVM uses.

        Random, as on Qubes, so that a DispVM's name tells nothing of
        how many came before it.
        """
        used = {
            vm._property_values.get("dispid") for vm in self._by_qid.values()
        }
        free = [n for n in range(1, limit + 1) if n not in used]
        if not free:
            raise exc.QubesException("no free dispid left")
        return random.SystemRandom().choice(free)
