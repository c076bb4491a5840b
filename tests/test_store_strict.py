"""qubes.xml is read strictly: what a save could not keep is refused.

Each case edits a copy of the sample; loading it must raise a named
``qubes.exc`` error naming the file (and line where known), and the file
must stay as it was.
"""

from __future__ import annotations

import pytest

import qubes
from qubes import exc

WORK_NAME = '<property name="name">work</property>'

CASES = {
    "markup inside a property": (
        WORK_NAME,
        '<property name="name">wo<b/>rk</property>',
    ),
    "comment inside a property": (
        '<property name="memory">425</property>',
        '<property name="memory">4<!-- x -->25</property>',
    ),
    "a document type with an entity": (
        "<qubes>",
        '<!DOCTYPE qubes [<!ENTITY x "INJECTED">]><qubes>',
    ),
    "properties given twice in a domain": (
        WORK_NAME,
        WORK_NAME + "</properties><properties>",
    ),
    "features given twice in a domain": (
        '<features/>\n      <tags>\n        <tag name="guivm-dom0"/>'
        '\n        <tag name="audiovm-dom0"/>\n        <tag name='
        '"created-by-dom0"/>',
        "<features/><features/>\n      <tags>\n        <tag name="
        '"guivm-dom0"/>\n        <tag name="audiovm-dom0"/>\n'
        '        <tag name="created-by-dom0"/>',
    ),
    "a feature given twice": (
        '<feature name="os">Linux</feature>',
        '<feature name="os">Linux</feature><feature name="os">BSD</feature>',
    ),
    "an unknown element in domains": (
        "<domains>",
        "<domains><domain-backup/>",
    ),
    "an unknown element in labels": (
        "<labels>",
        "<labels><lable/>",
    ),
    "an unknown element in pools": (
        "<pools>",
        "<pools><pool-disabled/>",
    ),
    "an unknown element in volume-config": (
        '<volume-config>\n        <volume name="root" pool="varlibqubes" '
        'vid="appvms/work/root"',
        '<volume-config><snapshot/>\n        <volume name="root" '
        'pool="varlibqubes" vid="appvms/work/root"',
    ),
    "text in the root element": (
        "<labels>",
        "stray text<labels>",
    ),
    "text between domains": (
        '<domain id="domain-3"',
        'stray text<domain id="domain-3"',
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_a_save_would_lose_is_refused(sample_path, case):
    old, new = CASES[case]
    text = sample_path.read_text()
    assert old in text, case
    sample_path.write_text(text.replace(old, new, 1))
    before = sample_path.read_bytes()
    with pytest.raises(exc.QubesXMLError) as info:
        qubes.Qubes(str(sample_path))
    assert str(sample_path) in str(info.value)
    assert "\n" not in str(info.value)
    assert sample_path.read_bytes() == before


def test_a_domain_without_uuid_gets_the_same_one_in_every_process(
    sample_path,
):
    text = sample_path.read_text().replace(
        '<property name="uuid">388d0cf6-0449-46ec-b90d-c0b13cd9dd98</property>',
        "",
    )
    sample_path.write_text(text)
    first = qubes.Qubes(str(sample_path)).domains["work"].uuid
    second = qubes.Qubes(str(sample_path)).domains["work"].uuid
    assert first == second


def test_a_store_behind_a_symbolic_link_is_written_through_it(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    qubes.Qubes.create_empty_store(str(real / "qubes.xml"))
    link_dir = tmp_path / "link"
    link_dir.mkdir()
    (link_dir / "qubes.xml").symlink_to(real / "qubes.xml")
    app = qubes.Qubes(str(link_dir / "qubes.xml"))
    app.default_memory = 777
    app.save()
    assert (link_dir / "qubes.xml").is_symlink()
    assert "777" in (real / "qubes.xml").read_text()


def test_a_store_that_would_not_load_is_not_saved(app, sample_path):
    before = sample_path.read_bytes()
    # Behind the checks of the setters: only the save can still see it.
    app.domains["sys-net"]._property_values["provides_network"] = False
    with pytest.raises(exc.QubesPropertyValueError) as info:
        app.save()
    assert str(sample_path) in str(info.value)
    assert sample_path.read_bytes() == before
