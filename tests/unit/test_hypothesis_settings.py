"""Property tests never make a clone red by a saved example (issue 24, item 5): Hypothesis's example database
(``.hypothesis/``) is kept out of the repository, and CI replays a fixed set of examples with no database at
all (tests/conftest.py's "ci" profile, loaded when ``CI`` is set)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import settings

from tests.conftest import ROOT


def test_the_ci_profile_is_derandomized_and_reads_no_example_database():
    ci = settings.get_profile("ci")
    assert ci.derandomize is True
    assert ci.database is None


def test_the_example_database_is_ignored_and_nothing_of_it_is_tracked():
    ignored = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    assert ".hypothesis/" in ignored
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "--", ".hypothesis"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
    assert tracked == ""
