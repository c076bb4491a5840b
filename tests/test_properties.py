"""Typed properties: defaults, unset versus None, write-once, setters,
their events, and the staged, silent loading of a store."""

import lxml.etree
import pytest

import qubes
from qubes import exc
from qubes.properties import Property, PropertyHolder, parse_bool


def _even(holder, prop, value):
    if value % 2:
        raise ValueError(f"{value} is odd")
    return value


class Holder(PropertyHolder):
    """A small holder with one property of each kind under test."""

    flag = Property(type=bool, default=False)
    count = Property(type=int, default=3)
    doubled = Property(type=int, default=lambda holder: holder.count * 2)
    even = Property(type=int, setter=_even, default=0)
    ident = Property(type=str, write_once=True)
    anything = Property(default="x")
    required = Property(type=str)


@pytest.fixture
def holder():
    holder = Holder()
    holder.events_enabled = True
    return holder


@pytest.fixture
def events(holder):
    """Every property event of *holder*, as (event, kwargs)."""
    seen = []

    def record(subject, event, **kwargs):
        seen.append((event, kwargs))

    for name in ("property-pre-set:*", "property-set:*", "property-reset:*"):
        holder.add_handler(name, record)
    return seen


def saved(holder):
    """The holder's saved properties, name to text."""
    return {
        node.get("name"): node.text or "" for node in holder.xml_properties()
    }


# -- defaults ----------------------------------------------------------------


def test_unset_property_reads_as_its_default_value(holder):
    assert holder.count == 3
    assert holder.property_is_default("count")


def test_callable_default_is_called_with_the_holder(holder):
    holder.count = 5
    assert holder.doubled == 10


def test_set_value_hides_the_default(holder):
    holder.doubled = 7
    assert holder.doubled == 7
    assert not holder.property_is_default("doubled")


def test_property_without_default_cannot_be_read_while_unset(holder):
    with pytest.raises(exc.QubesPropertyAccessError, match="required"):
        holder.required  # noqa: B018


def test_property_get_default_ignores_the_set_value(holder):
    holder.count = 9
    assert holder.property_get_default("count") == 3


def test_unknown_property_name_is_refused(holder):
    with pytest.raises(exc.QubesNoSuchPropertyError):
        holder.property_set("colour", "red")


# -- unset versus None -------------------------------------------------------


def test_none_is_a_value_distinct_from_unset(holder):
    holder.anything = None
    assert holder.anything is None
    assert not holder.property_is_default("anything")


def test_explicit_none_is_saved_as_an_empty_element(holder):
    holder.anything = None
    node = holder.xml_properties().find("property[@name='anything']")
    assert node is not None
    assert not node.text
    assert lxml.etree.tostring(node) == (
        b'<property name="anything"></property>'
    )


def test_unset_property_is_not_saved(holder):
    holder.count = 4
    assert saved(holder) == {"count": "4"}


# -- write-once --------------------------------------------------------------


def test_write_once_property_takes_a_first_value(holder):
    holder.ident = "first"
    assert holder.ident == "first"


def test_write_once_property_refuses_a_second_value(holder):
    holder.ident = "first"
    with pytest.raises(exc.QubesPropertyAccessError, match="write-once"):
        holder.ident = "second"
    assert holder.ident == "first"


def test_write_once_property_cannot_be_reset(holder):
    holder.ident = "first"
    with pytest.raises(exc.QubesPropertyAccessError):
        del holder.ident
    assert holder.ident == "first"


# -- setters that validate and coerce ----------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("true", True),
        ("false", False),
        ("True", True),
        ("False", False),
    ],
)
def test_bool_property_coerces_the_usual_words(holder, raw, expected):
    holder.flag = raw
    assert holder.flag is expected


@pytest.mark.parametrize("raw", ["maybe", "", 2, None, "1.0"])
def test_bool_property_refuses_other_values(holder, raw):
    holder.flag = True
    with pytest.raises(exc.QubesPropertyValueError) as info:
        holder.flag = raw
    assert info.value.prop == "flag"
    assert holder.flag is True


@pytest.mark.parametrize("raw", ["maybe", ""])
def test_parse_bool_raises_value_error(raw):
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool(raw)


def test_int_property_coerces_a_string(holder):
    holder.count = "12"
    assert holder.count == 12


def test_setter_refusal_is_a_named_value_error(holder):
    with pytest.raises(exc.QubesPropertyValueError, match="odd") as info:
        holder.even = 3
    assert isinstance(info.value, ValueError)
    assert info.value.prop == "even"
    assert holder.property_is_default("even")


def test_setter_receives_the_coerced_value(holder):
    holder.even = "4"
    assert holder.even == 4


# -- events of a change ------------------------------------------------------


def test_set_fires_pre_set_then_set_with_new_and_old_value(holder, events):
    holder.count = 5
    assert events == [
        (
            "property-pre-set:count",
            {"name": "count", "newvalue": 5, "oldvalue": 3},
        ),
        (
            "property-set:count",
            {"name": "count", "newvalue": 5, "oldvalue": 3},
        ),
    ]


def test_pre_set_handler_vetoes_by_raising(holder):
    holder.count = 5
    set_events = []

    def veto(subject, event, **kwargs):
        raise exc.QubesValueError("not today")

    holder.add_handler("property-pre-set:count", veto)
    holder.add_handler(
        "property-set:count", lambda *a, **kw: set_events.append(a)
    )
    with pytest.raises(exc.QubesValueError, match="not today"):
        holder.count = 6
    assert holder.count == 5
    assert set_events == []


def test_pre_set_veto_of_a_first_value_leaves_it_unset(holder):
    def veto(subject, event, **kwargs):
        raise exc.QubesValueError("no")

    holder.add_handler("property-pre-set:count", veto)
    with pytest.raises(exc.QubesValueError):
        holder.count = 6
    assert holder.property_is_default("count")


def test_refused_value_fires_no_event(holder, events):
    with pytest.raises(exc.QubesPropertyValueError):
        holder.even = 3
    assert events == []


def test_del_resets_and_fires_reset(holder, events):
    holder.count = 5
    events.clear()
    del holder.count
    assert holder.count == 3
    assert holder.property_is_default("count")
    assert events == [
        ("property-reset:count", {"name": "count", "oldvalue": 5})
    ]


def test_assigning_default_resets_and_fires_reset(holder, events):
    holder.count = 5
    events.clear()
    holder.count = qubes.DEFAULT
    assert holder.property_is_default("count")
    assert events == [
        ("property-reset:count", {"name": "count", "oldvalue": 5})
    ]


def test_property_reset_method_resets(holder):
    holder.count = 5
    holder.property_reset("count")
    assert holder.property_is_default("count")


def test_no_event_fires_while_events_are_off(holder, events):
    holder.events_enabled = False
    holder.count = 5
    del holder.count
    assert events == []


# -- properties of a real domain ---------------------------------------------


def test_domain_property_events_carry_name_new_and_old(app):
    work = app.domains["work"]
    seen = []
    work.add_handler(
        "property-set:memory", lambda vm, event, **kw: seen.append(kw)
    )
    work.memory = 512
    assert seen == [{"name": "memory", "newvalue": 512, "oldvalue": 400}]


def test_domain_explicit_none_netvm_is_saved_empty(app):
    work = app.domains["work"]
    work.netvm = None
    node = work.__xml__().find("properties/property[@name='netvm']")
    assert node is not None
    assert not node.text


def test_domain_unset_netvm_is_not_saved(app):
    work = app.domains["work"]
    assert work.netvm is app.domains["sys-net"]
    node = work.__xml__().find("properties/property[@name='netvm']")
    assert node is None


@pytest.mark.parametrize("name", ["qid", "uuid"])
def test_domain_identifiers_are_write_once(app, name):
    work = app.domains["work"]
    before = getattr(work, name)
    other = app.domains["sys-net"]
    with pytest.raises(exc.QubesPropertyAccessError):
        setattr(work, name, getattr(other, name))
    with pytest.raises(exc.QubesPropertyAccessError):
        delattr(work, name)
    assert getattr(work, name) == before


# -- staged loading ----------------------------------------------------------

FIREWALL = """\
    <domain id="domain-5" class="AppVM">
      <properties>
        <property name="label">green</property>
        <property name="name">sys-firewall</property>
        <property name="provides_network">True</property>
        <property name="qid">5</property>
        <property name="template">fedora-41</property>
      </properties>
      <features/>
      <tags/>
    </domain>
  </domains>"""


def test_netvm_defined_later_in_the_file_resolves(sample_path):
    text = sample_path.read_text()
    text = text.replace(
        '<property name="name">work</property>',
        '<property name="name">work</property>\n'
        '        <property name="netvm">sys-firewall</property>',
    )
    text = text.replace("  </domains>", FIREWALL)
    sample_path.write_text(text)
    app = qubes.Qubes(str(sample_path))
    firewall = app.domains["sys-firewall"]
    assert app.domains["work"].netvm is firewall
    assert firewall.netvm is app.domains["sys-net"]


def test_global_property_naming_a_later_domain_resolves(app):
    # <properties> comes before <domains>: default_netvm names sys-net
    # before any domain exists.
    assert app.default_netvm is app.domains["sys-net"]


def test_template_defined_later_in_the_file_resolves(sample_path):
    # Move the TemplateVM to the end of <domains>, after its AppVMs.
    root = lxml.etree.parse(str(sample_path)).getroot()
    domains = root.find("domains")
    template = domains.find("domain[@id='domain-1']")
    domains.remove(template)
    domains.append(template)
    sample_path.write_bytes(lxml.etree.tostring(root))
    app = qubes.Qubes(str(sample_path))
    assert app.domains["work"].template is app.domains["fedora-41"]


def test_class_handler_sees_no_load_time_set(sample_path, recording_appvm):
    app = qubes.Qubes(str(sample_path))
    loaded = [e for _, e in recording_appvm.seen if e.startswith("property")]
    assert loaded == []
    app.domains["work"].memory = 500
    assert ("work", "property-set:memory") in recording_appvm.seen


def test_events_are_on_once_loaded(app):
    assert app.events_enabled
    assert all(vm.events_enabled for vm in app.domains)
