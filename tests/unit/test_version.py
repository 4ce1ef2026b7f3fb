"""One version: pyproject.toml's ``[project] version`` is the source of truth, and the constant the code reads
(shared/api/version.py: no importlib.metadata on a cold start) repeats it exactly."""

from __future__ import annotations

import datetime as dt
import re
import tomllib

from shared.api import answers
from shared.api.version import VERSION
from shared.rules.errors import ApiError, ErrorCode
from tests.conftest import ROOT

SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")


def test_the_code_says_the_version_pyproject_says():
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert VERSION == project["version"]
    assert SEMVER.fullmatch(VERSION), f"{VERSION!r} is not MAJOR.MINOR.PATCH (docs/releasing.md)"


def test_the_openapi_document_has_the_same_version():
    import yaml

    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    assert spec["info"]["version"] == VERSION
    assert "version" in spec["components"]["schemas"]["Meta"]["properties"]


def test_the_changelog_has_a_section_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M), (
        f"CHANGELOG.md has no '## [{VERSION}] - YYYY-MM-DD' section (docs/releasing.md)")


def test_every_answer_envelope_names_the_version():
    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    assert answers.meta("req_1", now) == {"request_id": "req_1", "timestamp": "2026-12-07T12:00:00.000Z",
                                          "version": VERSION}
    error = ApiError(ErrorCode.NOT_FOUND, "no such message")
    assert answers.error_body(error, "req_1", now)["meta"]["version"] == VERSION
