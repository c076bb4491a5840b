"""The event emitter: class and instance handlers, their order,
wildcards, and asynchronous handlers."""

import asyncio

import pytest

from qubes.events import Emitter, handler


class Base(Emitter):
    events_enabled = True

    def __init__(self):
        self.calls = []

    @handler("thing")
    def on_thing_base(self, event, **kwargs):
        self.calls.append(("base", event, kwargs))


class Sub(Base):
    @handler("thing")
    def on_thing_sub(self, event, **kwargs):
        self.calls.append(("sub", event, kwargs))


class Mixin:
    """Not an emitter itself: its handlers must still be found."""

    @handler("thing")
    def on_thing_mixin(self, event, **kwargs):
        self.calls.append(("mixin", event, kwargs))


class Mixed(Mixin, Base):
    pass


def names(emitter):
    return [call[0] for call in emitter.calls]


def test_class_handler_receives_subject_event_and_kwargs():
    base = Base()
    base.fire_event("thing", colour="red")
    assert base.calls == [("base", "thing", {"colour": "red"})]


def test_base_class_handler_runs_before_subclass_handler():
    sub = Sub()
    sub.fire_event("thing")
    assert names(sub) == ["base", "sub"]


def test_mixin_handler_is_found():
    mixed = Mixed()
    mixed.fire_event("thing")
    assert sorted(names(mixed)) == ["base", "mixin"]


def test_handlers_of_other_events_do_not_run():
    base = Base()
    base.fire_event("other")
    assert base.calls == []


def test_one_handler_for_several_events():
    class Multi(Emitter):
        events_enabled = True
        seen = []

        @handler("one", "two")
        def on_any(self, event, **kwargs):
            self.seen.append(event)

    multi = Multi()
    multi.fire_event("one")
    multi.fire_event("two")
    multi.fire_event("three")
    assert multi.seen == ["one", "two"]


def test_instance_handler_runs_after_class_handlers():
    sub = Sub()
    sub.add_handler("thing", lambda s, e, **kw: s.calls.append(("own",)))
    sub.fire_event("thing")
    assert names(sub) == ["base", "sub", "own"]


def test_instance_handler_belongs_to_one_object_only():
    first, second = Base(), Base()
    first.add_handler("thing", lambda s, e, **kw: s.calls.append(("own",)))
    second.fire_event("thing")
    assert names(second) == ["base"]


def test_removed_instance_handler_no_longer_runs():
    base = Base()

    def own(subject, event, **kwargs):
        subject.calls.append(("own",))

    base.add_handler("thing", own)
    base.remove_handler("thing", own)
    base.fire_event("thing")
    assert names(base) == ["base"]


def test_removing_a_handler_never_added_is_a_no_op():
    base = Base()
    base.remove_handler("thing", print)
    base.fire_event("thing")
    assert names(base) == ["base"]


def test_fire_event_returns_non_none_results():
    base = Base()
    base.add_handler("thing", lambda s, e, **kw: 42)
    base.add_handler("thing", lambda s, e, **kw: None)
    assert base.fire_event("thing") == [42]


def test_prefix_wildcard_receives_matching_events_only():
    base = Base()
    seen = []
    base.add_handler("property-set:*", lambda s, e, **kw: seen.append(e))
    base.fire_event("property-set:name")
    base.fire_event("property-set:memory")
    base.fire_event("property-reset:name")
    assert seen == ["property-set:name", "property-set:memory"]


def test_star_receives_every_event():
    base = Base()
    seen = []
    base.add_handler("*", lambda s, e, **kw: seen.append(e))
    base.fire_event("thing")
    base.fire_event("domain-tag-add:work")
    assert seen == ["thing", "domain-tag-add:work"]


def test_class_wildcard_handler_is_found():
    class Wild(Emitter):
        events_enabled = True
        seen = []

        @handler("property-set:*")
        def on_set(self, event, **kwargs):
            self.seen.append(event)

    Wild().fire_event("property-set:label")
    assert Wild.seen == ["property-set:label"]


def test_base_class_wildcard_handler_runs_before_subclass_handler():
    # "Class handlers of a base class run before those of a subclass"
    # holds whatever name the handlers were declared with.
    class WildBase(Emitter):
        events_enabled = True

        def __init__(self):
            self.calls = []

        @handler("property-set:*")
        def on_any_set(self, event, **kwargs):
            self.calls.append("base")

    class ExactSub(WildBase):
        @handler("property-set:name")
        def on_name_set(self, event, **kwargs):
            self.calls.append("sub")

    sub = ExactSub()
    sub.fire_event("property-set:name")
    assert sub.calls == ["base", "sub"]


def test_disabled_emitter_delivers_nothing():
    base = Base()
    base.events_enabled = False
    assert base.fire_event("thing") == []
    assert base.calls == []


def test_pre_event_exception_reaches_the_caller_unchanged():
    base = Base()
    error = LookupError("vetoed")

    def veto(subject, event, **kwargs):
        raise error

    base.add_handler("thing", veto)
    with pytest.raises(LookupError) as info:
        base.fire_event("thing", pre_event=True)
    assert info.value is error


# -- asynchronous handlers ---------------------------------------------------


class AsyncEmitter(Emitter):
    events_enabled = True

    def __init__(self):
        self.calls = []

    @handler("start")
    def plain(self, event, **kwargs):
        self.calls.append("plain")

    @handler("start")
    async def slow(self, event, **kwargs):
        await asyncio.sleep(0)
        self.calls.append("async")
        return "started"


def test_fire_event_async_awaits_async_handlers_in_order():
    emitter = AsyncEmitter()
    emitter.add_handler("start", lambda s, e, **kw: s.calls.append("own"))
    results = asyncio.run(emitter.fire_event_async("start"))
    assert emitter.calls == ["plain", "async", "own"]
    assert results == ["started"]


def test_fire_event_async_passes_kwargs():
    emitter = AsyncEmitter()
    seen = []

    async def own(subject, event, **kwargs):
        seen.append(kwargs)

    emitter.add_handler("start", own)
    asyncio.run(emitter.fire_event_async("start", reason="test"))
    assert seen == [{"reason": "test"}]


def test_fire_event_refuses_an_async_handler():
    emitter = AsyncEmitter()
    with pytest.raises(TypeError, match="async"):
        emitter.fire_event("start")
    assert "async" not in emitter.calls


def test_handler_needs_an_event_name():
    with pytest.raises(TypeError):
        handler()
