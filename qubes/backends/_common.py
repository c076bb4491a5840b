"""What every backend does the same way, whatever its engine.

:class:`BackendBase` holds the parts that do not talk to an engine: the
capabilities record, the check that a domain asks for nothing the
engine cannot do, the domain XML (built from a :class:`DomainSpec` by
the driver, and kept while the domain does not change) and the
in-process QubesDB of each running domain. The libvirt engines
(:mod:`._base`) and liblxc (:mod:`.lxc.liblxc`) add the lifecycle.
"""

from __future__ import annotations

import uuid as uuid_module
from typing import Any, ClassVar

from qubes import exc
from qubes.backends import Capabilities
from qubes.backends._xml import XMLCache
from qubes.backends.spec import DomainSpec, domain_spec
from qubes.qdb import LocalQubesDB

__all__ = ["BackendBase"]


class BackendBase:
    """The engine-independent half of a backend.

    :param uri: where the engine is; by default :attr:`default_uri`
    """

    name: ClassVar[str] = ""
    default_uri: ClassVar[str] = ""
    #: the engine, in a few words, for :meth:`describe`
    engine_name = ""
    #: volumes the domains of this backend do without (not started)
    unused_volumes: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, uri: str | None = None) -> None:
        self.uri = uri or self.default_uri
        self._xml_cache = XMLCache()
        self._qubesdbs: dict[uuid_module.UUID, LocalQubesDB] = {}
        self._capabilities: Capabilities | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"

    # -- what a driver provides --------------------------------------------

    @property
    def engine_capabilities(self) -> Capabilities:
        """What the engine can do (each driver says)."""
        raise NotImplementedError

    def build_xml(self, spec: DomainSpec) -> str:
        """The domain XML of *spec*, in this backend's dialect."""
        raise NotImplementedError

    def networks(self, spec: DomainSpec) -> list[str]:
        """The networks the domain is plugged into that this backend
        makes."""
        return []

    @property
    def simulated(self) -> bool:
        """Whether nothing really runs (the simulated host)."""
        return False

    # -- shared -------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What this backend can do: the engine's capabilities, marked
        simulated on a simulated host; read once."""
        caps = self._capabilities
        if caps is None:
            caps = self.engine_capabilities
            if self.simulated:
                caps = Capabilities(
                    caps.domain_type,
                    caps.virt_modes,
                    caps.memory_hotplug,
                    caps.pci_passthrough,
                    caps.networking,
                    simulated=True,
                )
            self._capabilities = caps
        return caps

    def describe(self) -> str:
        """One line: backend, URI and engine, for the tools."""
        return f"backend {self.name} ({self.engine_name}), URI {self.uri}"

    @property
    def shared_between_processes(self) -> bool:
        """Whether other processes may drive the same domains."""
        return True

    def check_spec(self, spec: DomainSpec) -> None:
        """Refuse what this backend cannot run.

        :raises QubesUnsupportedError: a virt mode or PCI passthrough
            the engine does not offer
        """
        caps = self.capabilities
        if spec.virt_mode not in caps.virt_modes:
            raise exc.QubesUnsupportedError(
                f"the {self.name} backend cannot run virt_mode "
                f"{spec.virt_mode!r} (it runs "
                f"{', '.join(sorted(caps.virt_modes))})",
                domain=spec.name,
                prop="virt_mode",
            )
        if spec.pci and not caps.pci_passthrough:
            raise exc.QubesUnsupportedError(
                f"the {self.name} backend cannot pass PCI devices through",
                domain=spec.name,
            )

    def create_config(self, vm: Any) -> str:
        """The domain XML that starting *vm* would define.

        The XML of an unchanged domain is built once and reused.
        """
        key = vm.uuid
        xml = self._xml_cache.get_unchanged(key)
        if xml is not None:
            return xml
        try:
            spec = domain_spec(vm)
            xml = self._xml_cache.get(key, spec)
            if xml is None:
                self.check_spec(spec)
                xml = self.build_xml(spec)
                self._xml_cache.put(key, spec, xml)
        except exc.QubesException as err:
            err.locate(domain=vm.name)
            raise
        return xml

    def spec_of(self, vm: Any) -> DomainSpec:
        """The spec :meth:`create_config` last built *vm*'s XML from."""
        self.create_config(vm)
        spec = self._xml_cache.spec(vm.uuid)
        assert spec is not None
        return spec

    def qubesdb(self, vm: Any) -> LocalQubesDB | None:
        """The QubesDB of a running *vm*, or None."""
        return self._qubesdbs.get(vm.uuid)

    def _new_qubesdb(self, vm: Any) -> None:
        self._qubesdbs[vm.uuid] = LocalQubesDB(vm.name)

    def forget(self, vm: Any) -> None:
        """Drop what is kept for a domain that stopped (its QubesDB)."""
        qdb = self._qubesdbs.pop(vm.uuid, None)
        if qdb is not None:
            qdb.close()
