"""The README and the docs pages stay true to the code: every setting documented in the configuration page's
table, the two commands and the dev identity on the README, and every relative link (file and anchor) alive."""

import re
from pathlib import Path

import pytest

from infra.settings import ENV
from tests.conftest import ROOT
from tools.seed import DEV_API_KEY, DEV_SENDER

README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _table_names(text: str) -> set[str]:
    """The setting names in the first column of the page's tables (``| `A` / `B` | ...``)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_every_setting_is_documented():
    missing = sorted(set(ENV) - _table_names(CONFIGURATION))
    assert not missing, f"docs/configuration.md's configuration table lacks {missing}"


def test_the_configuration_table_names_only_real_settings():
    unknown = sorted(_table_names(CONFIGURATION) - set(ENV))
    assert not unknown, f"docs/configuration.md documents settings infra/settings.py does not declare: {unknown}"


def test_the_two_commands_and_the_dev_identity_are_shown():
    for text in ("make dev", "make test", DEV_API_KEY, DEV_SENDER, "MMSGATE_DEV_API_KEY"):
        assert text in README, text


def test_the_readme_says_make_test_installs_chromium_and_how_to_skip_it():
    makefile = (ROOT / "Makefile").read_text()
    assert "test: install browser" in makefile and "apt-get install" in makefile  # still true of the Makefile
    assert "apt-get" in README and "make -o browser test" in README


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings."""
    found = set()
    for line in path.read_text().splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_its_anchor(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links in code are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
