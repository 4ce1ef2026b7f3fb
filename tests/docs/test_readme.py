"""The README stays true to the code: every setting documented, the two commands shown."""

from infra.settings import ENV
from tests.conftest import ROOT
from tools.seed import DEV_API_KEY, DEV_SENDER

README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented():
    missing = [name for name in ENV if f"`{name}`" not in README]
    assert not missing, f"README's configuration table lacks {missing}"


def test_the_two_commands_and_the_dev_identity_are_shown():
    for text in ("make dev", "make test", DEV_API_KEY, DEV_SENDER, "MMSGATE_DEV_API_KEY"):
        assert text in README, text
