"""The store: qubes.xml loaded as labels, pools, global properties and
domains.

:class:`Qubes` loads a Qubes OS 4.x ``qubes.xml`` in stages, so that the
properties that name other domains resolve only once every domain
exists:

1. labels and pools;
2. each domain with its plain properties, features, tags, devices and
   volume configuration;
3. the global properties (several of them name domains);
4. each domain's properties that name other domains, and the backend
   domains of its devices;
5. checks that need the whole graph (netvm loops), then events are
   switched on and every domain fires ``domain-init`` and
   ``domain-load``.

An error at any stage is a :mod:`qubes.exc` error that names the file,
the domain and the property; nothing is written.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from qubes import exc, plugins
from qubes.collection import VMCollection
from qubes.host import Host
from qubes.label import Label, standard_labels
from qubes.loader import StoreLoader
from qubes.properties import (
    MAX_MEMORY,
    MAX_SECONDS,
    MAX_VCPUS,
    Property,
    PropertyHolder,
    VMProperty,
    bounded,
)
from qubes.storage import Pool, make_pool
from qubes.store import StoreFile, default_store_path
from qubes.vm import BaseVM
from qubes.vm.mix.dvmtemplate import setter_dispvm
from qubes.vm.mix.net import netvm_chain
from qubes.vm.qubesvm import _setter_kernel
from qubes.vm.templatevm import TemplateVM
from qubes.writer import write_store

__all__ = ["Qubes"]


def _setter_netvm(app: Any, prop: Property, value: Any) -> Any:
    if value is not None and not getattr(value, "provides_network", False):
        raise exc.QubesPropertyValueError(
            f"{value.name!r} does not provide network", value=value
        )
    return value


def _setter_pool(app: Any, prop: Property, value: Any) -> str:
    name = getattr(value, "name", value)
    if name not in app.pools:
        raise exc.QubesPropertyValueError(f"no pool {name!r}", value=value)
    return str(name)


def _setter_optional_str(app: Any, prop: Property, value: Any) -> Any:
    return str(value) if value not in (None, "") else None


def _setter_backend(app: Any, prop: Property, value: Any) -> Any:
    from qubes.backends import backend_names

    value = _setter_optional_str(app, prop, value)
    if value is not None and value not in backend_names():
        raise exc.QubesPropertyValueError(
            f"no backend {value!r} (known: {', '.join(backend_names())})",
            value=value,
        )
    return value


def _setter_uri(app: Any, prop: Property, value: Any) -> Any:
    from qubes.backends.choice import check_uri

    value = _setter_optional_str(app, prop, value)
    if value is None:
        return None
    try:
        return check_uri(value)
    except exc.QubesValueError as err:
        raise exc.QubesPropertyValueError(str(err), value=value) from err


def _default_pool(app: Any) -> str | None:
    # The reference's file pool is called varlibqubes; otherwise the
    # first pool that is not the kernel pool.
    if "varlibqubes" in app.pools:
        return "varlibqubes"
    for name, pool in app.pools.items():
        if pool.config.get("driver") != "linux-kernel":
            return str(name)
    return None


def _default_pool_kernel(app: Any) -> str | None:
    for name, pool in app.pools.items():
        if pool.config.get("driver") == "linux-kernel":
            return str(name)
    return app.default_pool  # type: ignore[no-any-return]


def _check_references(holder: Any) -> None:
    # Each explicitly set domain reference, checked again by its setter:
    # a change elsewhere may have made it invalid.
    values = holder._property_values
    for prop in holder.property_list():
        if isinstance(prop, VMProperty) and prop.__name__ in values:
            prop.coerce(holder, values[prop.__name__])


def _dom0(app: Any) -> Any:
    return app.domains.get(0)


def _global_vm(doc: str, **kwargs: Any) -> VMProperty:
    kwargs.setdefault("default", None)
    return VMProperty(allow_none=True, load_stage=3, doc=doc, **kwargs)


def _global(doc: str, **kwargs: Any) -> Property:
    return Property(load_stage=3, doc=doc, **kwargs)


class Qubes(PropertyHolder):
    """The store of one host.

    :param path: the qubes.xml file; by default :func:`default_store_path`
    :param load: whether to load it now
    :param backend: the backend to run domains on; by default chosen on
        first use (see :mod:`qubes.backends.choice`)
    :raises QubesStoreNotFoundError: *load* and there is no such file
    """

    default_template = _global_vm(
        "TemplateVM of new AppVMs.", vmclass=TemplateVM
    )
    default_netvm = _global_vm(
        "netvm of domains that do not set one.", setter=_setter_netvm
    )
    default_dispvm = _global_vm(
        "Disposable template of new DispVMs.", setter=setter_dispvm
    )
    management_dispvm = _global_vm(
        "Disposable template for management.", setter=setter_dispvm
    )
    default_guivm = _global_vm("Default GUI domain.", default=_dom0)
    default_audiovm = _global_vm("Default audio domain.", default=_dom0)
    clockvm = _global_vm("Domain that keeps the time.")
    updatevm = _global_vm("Domain that fetches updates for dom0.")
    default_kernel = _global(
        "Kernel of domains that do not set one.",
        setter=_setter_kernel,
        default=None,
    )
    default_pool = _global(
        "Pool of new volumes.", setter=_setter_pool, default=_default_pool
    )
    default_pool_root = _global(
        "Pool of new root volumes.",
        setter=_setter_pool,
        default=lambda app: app.default_pool,
    )
    default_pool_private = _global(
        "Pool of new private volumes.",
        setter=_setter_pool,
        default=lambda app: app.default_pool,
    )
    default_pool_volatile = _global(
        "Pool of new volatile volumes.",
        setter=_setter_pool,
        default=lambda app: app.default_pool,
    )
    default_pool_kernel = _global(
        "Pool of kernels.", setter=_setter_pool, default=_default_pool_kernel
    )
    default_memory = _global(
        "Memory of new domains, MiB.",
        type=int,
        setter=bounded(1, MAX_MEMORY),
        default=400,
    )
    default_maxmem = _global(
        "Upper memory bound of new domains, MiB.",
        type=int,
        setter=bounded(1, MAX_MEMORY),
        default=4000,
    )
    default_vcpus = _global(
        "CPUs of new domains.",
        type=int,
        setter=bounded(1, MAX_VCPUS),
        default=2,
    )
    default_qrexec_timeout = _global(
        "Seconds to wait for a guest agent.",
        type=int,
        setter=bounded(1, MAX_SECONDS),
        default=60,
    )
    default_shutdown_timeout = _global(
        "Seconds a shutdown may take.",
        type=int,
        setter=bounded(1, MAX_SECONDS),
        default=60,
    )
    default_keyboard_layout = _global(
        "Keyboard layout of domains.", type=str, default="us++"
    )
    stats_interval = _global(
        "Seconds between statistics samples.",
        type=int,
        setter=bounded(1, MAX_SECONDS),
        default=3,
    )
    check_updates_vm = _global(
        "Whether domains look for updates.", type=bool, default=True
    )
    vmm_backend = _global(
        "Backend domains run on (xen, kvm, lxc); empty: auto-detect.",
        setter=_setter_backend,
        default=None,
    )
    vmm_uri = _global(
        "libvirt URI of the backend; empty: the backend's default.",
        setter=_setter_uri,
        default=None,
    )

    def __init__(
        self,
        path: str | None = None,
        *,
        load: bool = True,
        backend: Any = None,
    ) -> None:
        super().__init__()
        self.store = StoreFile(path or default_store_path())
        self.domains = VMCollection(self)
        self.labels: dict[int, Label] = {}
        self.pools: dict[str, Pool] = {}
        self.host = Host()
        self._backend = backend
        #: why :attr:`backend` is the one it is, for the tools
        self.backend_reason = "given by the caller" if backend else ""
        self._subscription: Any = None
        self._subscribed_loop: Any = None
        #: coroutines started by engine events, kept until they finish
        self._tasks: set[asyncio.Task[Any]] = set()
        self._root_attributes: dict[str, str] = {}
        if load:
            self.load()

    def __repr__(self) -> str:
        return f"<Qubes {self.path}>"

    @property
    def path(self) -> str:
        """The qubes.xml file."""
        return self.store.path

    @property
    def base_dir(self) -> str:
        """The folder of the store; domain folders live under it."""
        return os.path.dirname(self.path)

    def location_name(self) -> str | None:
        """Global properties belong to no domain."""
        return None

    # -- the backend ------------------------------------------------------

    @property
    def backend(self) -> Any:
        """The :class:`~qubes.backends.Backend` domains run on, chosen on
        first use."""
        if self._backend is None:
            self.use_backend()
        return self._backend

    def use_backend(
        self, name: str | None = None, uri: str | None = None
    ) -> None:
        """Choose the backend (see :mod:`qubes.backends.choice`).

        :param name: a backend name, as ``--backend`` gives it
        :param uri: a libvirt URI, as ``--uri`` gives it
        """
        from qubes.backends.choice import choose

        choice = choose(self, name, uri)
        if self._backend is not None:
            self._backend.close()
        self._backend = choice.backend
        self.backend_reason = choice.reason
        self._subscription = None

    def watch_engine_events(self) -> None:
        """Notice domains that stop outside our control, from now on, on
        the running asyncio loop (lifecycle actions call this)."""
        loop = asyncio.get_running_loop()
        if self._subscription is not None and self._subscribed_loop is loop:
            return
        if self._subscription is not None:
            self._subscription.cancel()
        self._subscription = self.backend.subscribe(self._on_engine_event)
        self._subscribed_loop = loop

    def _on_engine_event(self, uuid: str, event: Any) -> None:
        vm = self.domains.get(uuid)
        handler = getattr(vm, "on_engine_event", None)
        if handler is None:
            return
        coroutine = handler(event)
        if coroutine is not None:
            task = asyncio.ensure_future(coroutine)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- loading and saving ------------------------------------------------

    def load(self) -> None:
        """Read the store file (see the module's description of stages).

        :raises QubesException: the file is missing or invalid; the
            error names the file, domain and property
        """
        try:
            with self.store.open() as file:
                StoreLoader(self).load(file)
        except exc.QubesException as err:
            err.locate(path=self.path)
            raise

    def get_vm_class(self, name: str) -> type[BaseVM]:
        """The domain class registered as *name*.

        :raises QubesUnknownClassError: no such class
        """
        try:
            cls = plugins.load(plugins.GROUP_VM, name)
        except LookupError:
            raise exc.QubesUnknownClassError(
                f"unknown domain class {name!r}"
            ) from None
        return cls  # type: ignore[no-any-return]

    def save(self) -> None:
        """Write the store atomically (see :mod:`qubes.store`), after
        :meth:`check`: a store is never saved in a state it could not be
        loaded from.

        :raises QubesConcurrentWriteError: another writer changed the
            file since it was loaded
        :raises QubesException: :meth:`check` fails; nothing is written
        """
        self.check()
        self.store.write(lambda file: write_store(self, file))

    def check(self) -> None:
        """Check what the loader checks: every domain reference is valid
        (a template that is a TemplateVM, a netvm that provides network,
        no netvm loop, required properties set).

        :raises QubesException: the first problem, naming the domain and
            the property
        """
        try:
            _check_references(self)
            for vm in self.domains:
                try:
                    _check_references(vm)
                    vm.require_properties(4)
                    if hasattr(vm, "netvm"):
                        netvm_chain(vm)
                except exc.QubesException as err:
                    err.locate(domain=vm.location_name())
                    raise
        except exc.QubesException as err:
            err.locate(path=self.path)
            raise

    @classmethod
    def create_empty_store(cls, path: str | None = None) -> Qubes:
        """A new store with the standard labels, a file pool, a kernel
        pool and dom0, saved at *path*.

        :raises QubesStoreError: a file exists there already
        """
        app = cls(path, load=False)
        if os.path.exists(app.path):
            raise exc.QubesStoreError("exists already", path=app.path)
        os.makedirs(app.base_dir, exist_ok=True)
        app.store.mark_new()
        app.labels = standard_labels()
        app.pools["varlibqubes"] = make_pool(
            "varlibqubes", {"dir_path": app.base_dir, "driver": "file"}
        )
        app.pools["linux-kernel"] = make_pool(
            "linux-kernel",
            {
                "dir_path": os.path.join(app.base_dir, "vm-kernels"),
                "driver": "linux-kernel",
            },
        )
        app.events_enabled = True
        app.domains.add(app.get_vm_class("AdminVM")(app, None, label="black"))
        app.save()
        return app

    # -- lookups and changes ---------------------------------------------

    def get_label(self, label: Any) -> Label:
        """The label given by object, index, ``label-N`` or name.

        :raises QubesLabelNotFoundError: no such label
        """
        if isinstance(label, Label):
            if self.labels.get(label.index) is label:
                return label
            label = label.name
        if isinstance(label, int) and label in self.labels:
            return self.labels[label]
        if isinstance(label, str):
            if label.startswith("label-") and label[6:].isdigit():
                found = self.labels.get(int(label[6:]))
                if found is not None:
                    return found
            for candidate in self.labels.values():
                if candidate.name == label:
                    return candidate
        raise exc.QubesLabelNotFoundError(f"no such label: {label!s}")

    def default_pool_for(self, volume: str) -> str:
        """The pool name new volumes called *volume* go to."""
        prop = f"default_pool_{volume}"
        if prop in self._property_index:
            return str(getattr(self, prop))
        return str(self.default_pool)

    def add_new_vm(
        self, cls: Any, qid: int | None = None, **kwargs: Any
    ) -> Any:
        """Create a domain, give it a qid and volumes, and add it.

        :param cls: a domain class or its name
        :param qid: the qid; by default the lowest free one
        :param kwargs: property values (``name`` and ``label`` at least)
        :returns: the new domain
        """
        if isinstance(cls, str):
            cls = self.get_vm_class(cls)
        if getattr(cls, "uuid_is_generated", True) is False:
            raise exc.QubesValueError(
                f"a {cls.__name__} cannot be created: there is only dom0"
            )
        if qid is None:
            qid = self.domains.get_new_unused_qid()
        vm = cls(self, None, qid=qid, **kwargs)
        vm.require_properties(4)
        # The template a new domain gets is its own from then on, not
        # whatever the global default becomes later (its volumes are
        # made from this one).
        if "template" in cls._property_index:
            vm.property_keep_default("template")
        if not vm.volume_config and hasattr(vm, "default_volume_config"):
            vm.volume_config = vm.default_volume_config()
        return self.domains.add(vm)

    def references_to(self, vm: BaseVM) -> list[str]:
        """Every place that names *vm*: global properties and domains."""
        found = [
            f"global {prop.__name__}"
            for prop in self.property_list()
            if prop.refers_to(self, vm)
        ]
        for other in self.domains:
            if other is not vm:
                found.extend(
                    f"{other.name}.{where}" for where in other.references_to(vm)
                )
        return found
