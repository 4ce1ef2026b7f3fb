"""Template rules (shared/rules/templates.py): placeholders, Notify's name matching, one-pass rendering,
missing values named, link-looking values refused, the send's limits applied to the rendered text."""

from __future__ import annotations

import pytest

from shared.rules import templates as t


def test_placeholders_in_order_once_each_as_first_written():
    assert t.placeholders("Hi ((First name)), your ((code)) for ((first_name))", "((Code)) ((shop))") == [
        "First name", "code", "shop"]
    assert t.placeholders("no placeholders (here) or ((bad-name)) or (( ))") == []


def test_names_match_ignoring_case_spaces_and_underscores():
    text = "Hi ((First name))!"
    for name in ("first name", "FIRST_NAME", "firstname", "First_Name"):
        assert t.render(text, {name: "Ann"}) == "Hi Ann!"


def test_render_is_one_pass_so_a_value_cannot_pull_in_another():
    out = t.render("((a)) and ((b))", {"a": "((b))", "b": "secret"})
    assert out == "((b)) and secret"


def test_missing_names_every_gap_in_the_templates_order():
    with pytest.raises(t.MissingPersonalisation) as caught:
        t.render("((one)) ((two)) ((three))", {"two": "2"})
    assert caught.value.names == ["one", "three"]
    assert str(caught.value) == "Missing personalisation: one, three"


def test_render_all_names_gaps_of_body_and_subject_together():
    with pytest.raises(t.MissingPersonalisation) as caught:
        t.render_all("Hi ((name))", "For ((shop))", {}, max_body=1600, max_subject=64)
    assert caught.value.names == ["name", "shop"]


@pytest.mark.parametrize("value", [
    "https://evil.example", "http://x.y/z", "see www.evil", "evil.com", "go to EVIL.IO now", "bit.ly/abc",
    "login.example-bank.xyz", "host.internal/path", "ftp://files",
])
def test_a_value_that_looks_like_a_link_is_refused_by_name(value):
    with pytest.raises(t.TemplateProblem) as caught:
        t.check_values({"Name": value})
    assert caught.value.field == "personalisation.Name"
    assert "link" in caught.value.issue


@pytest.mark.parametrize("value", [
    "Ann", "O'Brien", "3.14", "St.John", "Mr. Smith", "£12.50 (incl. VAT)", "a/b", "10:30", "Ann-Marie",
])
def test_ordinary_values_pass(value):
    assert t.render("((x))", t.check_values({"x": value})) == value


def test_values_must_be_text_and_bounded():
    with pytest.raises(t.TemplateProblem):
        t.check_values({"x": 3})  # type: ignore[dict-item]
    with pytest.raises(t.TemplateProblem):
        t.check_values({"x": "a" * (t.MAX_VALUE + 1)})
    with pytest.raises(t.TemplateProblem):
        t.check_values({str(i): "v" for i in range(t.MAX_VALUES + 1)})


def test_the_rendered_body_is_held_to_the_send_limit():
    with pytest.raises(t.TemplateProblem) as caught:
        t.render_all("((x))((x))", None, {"x": "a" * 900}, max_body=1600, max_subject=64)
    assert "1800" in caught.value.issue
    ok = t.render_all("((x))", "S ((x))", {"x": "a" * 10}, max_body=1600, max_subject=64)
    assert ok == t.Rendered(body="a" * 10, subject="S " + "a" * 10)


def test_extra_values_are_ignored_and_used_values_keeps_only_the_templates():
    assert t.render("Hi ((name))", {"name": "Ann", "unused": "x"}) == "Hi Ann"
    assert t.used_values({"First Name": "Ann", "other": "x"}, ["first_name"]) == {"firstname": "Ann"}


def test_no_text_renders_to_none():
    assert t.render(None, {}) is None
