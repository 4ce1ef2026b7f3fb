"""mmsgate-admin against the emulators: every subcommand's happy path checked through what it changed (the
stored documents, the API's answers), and its mistakes: one line on stderr, a non-zero exit, nothing
written, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shared.carriers.signatures import tenant_secret
from tests.conftest import fictional
from tools.admin_cli import main

TENANT = "tnt_dev"  # what the env fixture seeds


@pytest.fixture
def cli(env, capsys):
    """Run main() in-process: (exit code, parsed JSON or None, stderr)."""

    def run(*argv: str) -> tuple[int, object, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        if code == 0:
            assert err == "", err
            return code, json.loads(out), err
        assert out == "", f"a failed command printed on stdout: {out!r}"
        assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
        assert "Traceback" not in err
        return code, None, err

    return run


def tenant_exists(env, tenant_id: str) -> bool:
    from infra import collections as C

    return env.store.db.collection(C.TENANTS).document(tenant_id).get().exists


# -- help ----------------------------------------------------------------------------------------------
def test_help_names_every_command_and_each_group_has_its_own(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for group in ("tenants", "keys", "balance", "senders", "webhooks", "keywords", "pricing", "opt-outs"):
        assert group in text
        assert main([group, "--help"]) == 0
        assert "ACTION" in capsys.readouterr().out
    assert "GOOGLE_CLOUD_PROJECT" in text and "FIRESTORE_EMULATOR_HOST" in text and "WEBHOOK_SIGNING_KEY" in text


@pytest.mark.parametrize("argv", [
    [], ["nope"], ["tenants"], ["tenants", "explode"], ["tenants", "show"], ["tenants", "show", "a/b"],
    ["tenants", "create", "--name", "x"], ["tenants", "create", "--name", "x", "--default-from", "+1"],
    ["tenants", "create", "--name", "x", "--default-from", "+18005551234", "--balance", "ten"],
    ["tenants", "create", "--name", "x", "--default-from", "+18005551234", "--balance", "-1"],
    ["tenants", "create", "--name", "x", "--default-from", "+18005551234", "--balance", "0.0000001"],
    ["tenants", "create", "--name", "x", "--default-from", "+18005551234", "--rps", "0"],
    ["balance", "top-up", TENANT, "NaN"], ["senders", "add", TENANT, "4155550100"],
    ["opt-outs", "add", TENANT, "+1"], ["pricing", "show", "USA"], ["keys", "revoke"],
    ["webhooks", "set", TENANT, "--url", "https://a.example", "--clear-url"],
])
def test_a_wrong_command_line_is_one_line_and_exit_2(cli, argv):
    code, _, err = cli(*argv)
    assert code == 2, err
    assert err.startswith("mmsgate-admin")


# -- tenants -------------------------------------------------------------------------------------------
def test_tenants_create_show_list(cli, env):
    code, created, _ = cli("tenants", "create", "--name", "acme", "--default-from", "+18005550111",
                           "--balance", "12.345", "--rps", "5", "--daily-quota", "100", "--id", "tnt_acme")
    assert code == 0
    assert created["id"] == "tnt_acme"
    tenant = env.store.accounts.get_tenant("tnt_acme")
    assert tenant.balance_micros == 12_345_000 and tenant.rps == 5 and tenant.daily_quota == 100
    assert tenant.default_from == "+18005550111" and tenant.senders["+18005550111"].allows("mms")

    assert cli("tenants", "show", "tnt_acme")[1]["balance"] == "12.345"
    listed = {t["id"]: t for t in cli("tenants", "list")[1]}
    assert set(listed) == {TENANT, "tnt_acme"}
    assert listed["tnt_acme"]["name"] == "acme"


def test_tenants_create_refuses_an_existing_id_and_a_rejected_webhook(cli, env):
    before = env.store.accounts.tenant_doc(TENANT)
    code, _, err = cli("tenants", "create", "--name", "again", "--default-from", "+18005550111", "--id", TENANT)
    assert code == 1 and "exists" in err
    assert env.store.accounts.tenant_doc(TENANT)["name"] == before["name"]
    code, _, err = cli("tenants", "create", "--name", "x", "--default-from", "+18005550111", "--id", "tnt_x",
                       "--webhook-url", "http://169.254.169.254/latest")
    assert code == 1 and "rejected" in err
    assert not tenant_exists(env, "tnt_x")


def test_an_unknown_tenant_is_refused_by_every_command_and_never_created(cli, env):
    g = "tnt_ghost"
    for argv in (["tenants", "show", g], ["keys", "create", g], ["keys", "list", g], ["balance", "show", g],
                 ["balance", "top-up", g, "1"], ["senders", "list", g], ["senders", "add", g, "+14155550100"],
                 ["senders", "remove", g, "+14155550100"], ["webhooks", "set", g, "--url", env.receiver.url],
                 ["webhooks", "secret", g], ["webhooks", "rotate", g], ["opt-outs", "list", g],
                 ["opt-outs", "add", g, "+14155550100"], ["opt-outs", "remove", g, "+14155550100"],
                 ["keys", "revoke", "mk_", "--tenant", g]):
        code, _, err = cli(*argv)
        assert code == 1, argv
        assert "no tenant tnt_ghost" in err, (argv, err)
    assert not tenant_exists(env, "tnt_ghost")


# -- API keys ------------------------------------------------------------------------------------------
def test_keys_create_list_and_revoke_by_prefix(cli, env):
    _, created, _ = cli("keys", "create", TENANT)
    key = created["api_key"]
    assert key.startswith("mk_test_") and key.endswith(f"_{TENANT}")  # made against the emulators, like the dev key
    client = env.client(key)
    assert client.get("/api/v1/pricing/messaging", params={"country": "US"}).status_code == 200

    listed = cli("keys", "list", TENANT)[1]
    assert key[:12] in {k["prefix"] for k in listed}
    assert all(key not in json.dumps(k) for k in listed)  # the key itself is never stored or shown

    code, revoked, _ = cli("keys", "revoke", key[:12])
    assert code == 0 and revoked["revoked"] is True
    assert client.get("/api/v1/pricing/messaging", params={"country": "US"}).status_code == 401
    assert env.api.get("/api/v1/pricing/messaging", params={"country": "US"}).status_code == 200  # the other key
    assert cli("keys", "revoke", key)[1]["note"] == "was revoked already"


def test_keys_revoke_refuses_an_unknown_or_ambiguous_prefix(cli, env):
    cli("keys", "create", TENANT)
    code, _, err = cli("keys", "revoke", "mk_nothing_")
    assert code == 1 and "no API key" in err
    code, _, err = cli("keys", "revoke", "mk_")  # the dev key (mk_test_devlocal...) and the new one (mk_test_...)
    assert code == 1 and "matches 2 keys" in err
    assert env.api.get("/api/v1/pricing/messaging", params={"country": "US"}).status_code == 200
    code, _, err = cli("keys", "revoke", env.api_key)  # the whole key, but another tenant's
    assert code == 0
    assert env.api.get("/api/v1/pricing/messaging", params={"country": "US"}).status_code == 401


# -- balance -------------------------------------------------------------------------------------------
def test_balance_show_and_top_up(cli, env):
    start = env.balance()
    assert cli("balance", "show", TENANT)[1]["balance_micros"] == start
    code, answer, _ = cli("balance", "top-up", TENANT, "2.50")
    assert code == 0
    assert env.balance() == start + 2_500_000
    assert answer["balance_micros"] == start + 2_500_000 and answer["added"] == "2.50"
    code, _, err = cli("balance", "top-up", TENANT, "0")
    assert code == 1 and "more than 0" in err
    assert env.balance() == start + 2_500_000


# -- senders -------------------------------------------------------------------------------------------
def test_senders_add_list_remove(cli, env):
    code, listed, _ = cli("senders", "add", TENANT, "+14155550177", "--no-mms")
    assert code == 0
    assert {"number": "+14155550177", "sms": True, "mms": False, "carrier": "telnyx", "default": False,
            "kind": "long_code"} in listed
    # the stored capabilities are the ones the send gate reads
    sms = env.api.post("/api/v1/messages/sms", json={"to": fictional(1), "from": "+14155550177", "body": "x"})
    assert sms.status_code == 200, sms.text
    mms = env.api.post("/api/v1/messages/sms", json={"to": fictional(2), "from": "+14155550177", "body": "x",
                                                     "media_urls": [env.sample_media_url]})
    assert mms.status_code == 403 and mms.json()["error"]["code"] == "SENDER_NOT_ALLOWED"

    code, listed, _ = cli("senders", "remove", TENANT, "+14155550177")
    assert code == 0 and "+14155550177" not in {s["number"] for s in listed}
    assert "+14155550177" not in env.store.accounts.tenant_doc(TENANT)["sender_numbers"]


def test_a_sender_hosted_at_twilio_sends_through_twilio_and_weights_are_the_tenants_own(cli, env):
    code, listed, _ = cli("senders", "add", TENANT, "+18335550188", "--carrier", "twilio")
    assert code == 0
    assert {"number": "+18335550188", "sms": True, "mms": True, "carrier": "twilio", "default": False,
            "kind": "toll_free"} in listed
    sent = env.api.post("/api/v1/messages/sms", json={"to": fictional(3), "from": "+18335550188", "body": "x"})
    assert sent.status_code == 200, sent.text
    assert env.wait_status(sent.json()["data"]["id"], "delivered", timeout=30)["carrier"] == "twilio"
    code, shown, _ = cli("senders", "weights", TENANT, "telnyx=70", "twilio=30")
    assert code == 0 and shown == {"carrier_weights": {"telnyx": 70, "twilio": 30}}
    assert env.store.accounts.get_tenant(TENANT).carrier_weights == {"telnyx": 70, "twilio": 30}
    code, _, err = cli("senders", "weights", TENANT, "sinch=10")
    assert code != 0 and "telnyx=N" in err
    code, shown, _ = cli("senders", "weights", TENANT)
    assert code == 0 and shown == {"carrier_weights": {}}


def test_senders_refuses_removing_the_default_an_unknown_number_or_a_default_without_mms(cli, env):
    default = env.store.accounts.get_tenant(TENANT).default_from
    code, _, err = cli("senders", "remove", TENANT, default)
    assert code == 1 and "default sender" in err
    code, _, err = cli("senders", "remove", TENANT, "+14155550199")
    assert code == 1 and "not a sender" in err
    code, _, err = cli("senders", "add", TENANT, "+14155550198", "--default", "--no-mms")
    assert code == 1 and "MMS-capable" in err
    assert env.store.accounts.get_tenant(TENANT).default_from == default
    code, listed, _ = cli("senders", "add", TENANT, "+14155550198", "--default")
    assert code == 0
    assert {"number": "+14155550198", "sms": True, "mms": True, "carrier": "telnyx", "default": True,
            "kind": "long_code"} in listed


def test_senders_add_stores_the_kind_said_or_inferred_and_the_send_uses_its_limit(cli, env):
    code, listed, _ = cli("senders", "add", TENANT, "+14155550166", "--kind", "toll_free")
    assert code == 0
    assert {"number": "+14155550166", "sms": True, "mms": True, "carrier": "telnyx", "default": False,
            "kind": "toll_free"} in listed
    code, listed, _ = cli("senders", "add", TENANT, "+18885550166")
    assert code == 0 and {s["number"]: s["kind"] for s in listed}["+18885550166"] == "toll_free"
    senders = env.store.accounts.tenant_doc(TENANT)["senders"]
    assert (senders["+14155550166"]["kind"], senders["+18885550166"]["kind"]) == ("toll_free", "toll_free")
    code, listed, _ = cli("senders", "add", TENANT, "+14155550166", "--no-sms")  # changing it keeps its kind
    assert code == 0 and {s["number"]: s["kind"] for s in listed}["+14155550166"] == "toll_free"
    code, _, err = cli("senders", "add", TENANT, "+14155550167", "--kind", "satellite")
    assert code != 0 and "invalid choice" in err
    # the stored kind is what the send reads: a toll-free limit for this +1 415 number
    tenant = env.store.accounts.get_tenant(TENANT)
    assert tenant.senders["+14155550166"].kind == "toll_free"


# -- keyword replies -----------------------------------------------------------------------------------
def test_keywords_show_the_replies_as_sent_with_encoding_and_segments(cli, env):
    code, shown, _ = cli("keywords", "show", TENANT)
    assert code == 0 and set(shown["replies"]) == {"stop", "help", "start"}
    for reply in shown["replies"].values():  # the compliant defaults: plain GSM-7, each within one segment
        assert (reply["own"], reply["encoding"], reply["segments"]) == (False, "GSM-7", 1), reply
        assert reply["text"]


def test_keywords_set_reports_what_a_reply_costs_and_smart_encoding_saves_it(cli, env):
    text = "{brand}: you\u2019re unsubscribed \u2014 no more messages from us. Reply START to resubscribe. " * 2
    code, answer, _ = cli("keywords", "set", TENANT, "--stop", text.strip())
    assert code == 0
    stop = answer["replies"]["stop"]
    assert stop["own"] is True and "\u2019" in stop["text"] and not stop["text"].startswith("{brand}")
    assert (stop["encoding"], stop["segments"]) == ("UCS-2", 3)  # about 170 characters, 67 to a part
    assert env.store.accounts.tenant_doc(TENANT)["keyword_texts"]["stop"] == text.strip()

    code, answer, _ = cli("keywords", "set", TENANT, "--stop", text.strip(), "--smart-encoding")
    assert code == 0
    stop = answer["replies"]["stop"]
    assert (stop["encoding"], stop["segments"]) == ("GSM-7", 2)
    assert "you're unsubscribed - no more" in stop["text"]
    assert answer["replies"]["help"]["own"] is False  # the others untouched

    assert cli("keywords", "set", TENANT, "--clear", "stop")[0] == 0
    assert cli("keywords", "show", TENANT)[1]["replies"]["stop"]["own"] is False


def test_keywords_set_refuses_an_empty_or_long_text_and_nothing(cli, env):
    for argv in (["--stop", " "], ["--help-text", "x" * 321], []):
        code, _, err = cli("keywords", "set", TENANT, *argv)
        assert code == 2 and err, argv
    assert not env.store.accounts.tenant_doc(TENANT).get("keyword_texts")


# -- webhooks ------------------------------------------------------------------------------------------
def test_webhooks_set_checks_the_url_and_clears(cli, env):
    code, answer, _ = cli("webhooks", "set", TENANT, "--url", env.receiver.url, "--failover-url", env.receiver.url)
    assert code == 0
    doc = env.store.accounts.tenant_doc(TENANT)
    assert doc["webhook_url"] == env.receiver.url and doc["webhook_failover_url"] == env.receiver.url

    for url in ("http://169.254.169.254/latest/meta-data", "ftp://example.com/x", "not a url"):
        code, _, err = cli("webhooks", "set", TENANT, "--url", url)
        assert code == 1 and "rejected" in err, url
    assert env.store.accounts.tenant_doc(TENANT)["webhook_url"] == env.receiver.url

    code, _, err = cli("webhooks", "set", TENANT)
    assert code == 2 and "nothing to set" in err
    assert cli("webhooks", "set", TENANT, "--clear-url", "--clear-failover-url")[0] == 0
    doc = env.store.accounts.tenant_doc(TENANT)
    assert doc["webhook_url"] is None and doc["webhook_failover_url"] is None


def test_webhooks_secret_and_rotate(cli, env):
    key = os.environ["WEBHOOK_SIGNING_KEY"]
    code, shown, _ = cli("webhooks", "secret", TENANT)
    assert code == 0 and shown["secret"] == tenant_secret(key, TENANT) and shown["version"] == 0

    code, rotated, _ = cli("webhooks", "rotate", TENANT)
    assert code == 0
    assert rotated["version"] == 1 and rotated["secret"] == tenant_secret(key, TENANT, 1)
    assert rotated["secret"] != shown["secret"] and rotated["previous_secret"] == shown["secret"]
    assert cli("webhooks", "secret", TENANT)[1]["secret"] == rotated["secret"]
    assert env.store.accounts.get_tenant(TENANT).webhook_secret_version == 1


def test_no_secret_is_printed_or_rotated_without_the_signing_key(cli, env, monkeypatch):
    monkeypatch.delenv("WEBHOOK_SIGNING_KEY")
    for action in ("secret", "rotate"):
        code, _, err = cli("webhooks", action, TENANT)
        assert code == 1 and "WEBHOOK_SIGNING_KEY is not set" in err
    assert env.store.accounts.get_tenant(TENANT).webhook_secret_version == 0


# -- pricing -------------------------------------------------------------------------------------------
def test_pricing_seed_and_show(cli, env):
    from infra import collections as C

    for snap in env.store.db.collection(C.PRICING).stream():
        snap.reference.delete()
    code, _, err = cli("pricing", "show", "US")
    assert code == 1 and "no prices for US" in err
    assert cli("pricing", "seed")[1] == {"seeded": ["CA", "GB", "US"]}
    assert cli("pricing", "show", "us")[1] == {"US": {"currency": "USD", "sms": "0.008", "mms": "0.02"}}
    assert set(cli("pricing", "show")[1]) == {"CA", "GB", "US"}
    assert env.api.get("/api/v1/pricing/messaging", params={"country": "GB"}).json()["data"]["channels"] == [
        {"channel": "sms", "price": "0.0400", "unit": "segment"}]


# -- opt-outs ------------------------------------------------------------------------------------------
def test_opt_outs_add_list_remove(cli, env):
    number = fictional(3)
    assert cli("opt-outs", "add", TENANT, number)[0] == 0
    assert [o["number"] for o in cli("opt-outs", "list", TENANT)[1]] == [number]
    refused = env.api.post("/api/v1/messages/sms", json={"to": number, "body": "x"})
    assert refused.json()["error"]["code"] == "RECIPIENT_OPTED_OUT"

    assert cli("opt-outs", "remove", TENANT, number)[0] == 0
    assert cli("opt-outs", "list", TENANT)[1] == []
    code, _, err = cli("opt-outs", "remove", TENANT, number)
    assert code == 1 and "has not opted out" in err


# -- environment ---------------------------------------------------------------------------------------
def test_a_missing_or_unreachable_environment_is_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    code, _, err = cli("tenants", "list")
    assert code == 1 and "GOOGLE_CLOUD_PROJECT is not set" in err
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "demo-mmsgate")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{closed.getsockname()[1]}")
        code, _, err = cli("tenants", "list")
    assert code == 1 and "not answering" in err
    code, _, err = cli("--local", "--state", str(tmp_path / "missing.json"), "tenants", "list")
    assert code == 1 and "make dev" in err


def test_local_reads_the_stack_state(cli, env, monkeypatch, tmp_path):
    state = tmp_path / "stack.json"
    state.write_text(json.dumps({"env": env.stack.function_env()}))
    for name in ("GOOGLE_CLOUD_PROJECT", "FIRESTORE_EMULATOR_HOST", "WEBHOOK_SIGNING_KEY"):
        monkeypatch.delenv(name)
    code, shown, _ = cli("webhooks", "secret", TENANT, "--local", "--state", str(state))
    assert code == 0 and shown["secret"] == tenant_secret(env.stack.function_env()["WEBHOOK_SIGNING_KEY"], TENANT)


def test_the_console_script_runs_as_its_own_process(env):
    script = Path(sys.executable).parent / "mmsgate-admin"
    assert script.exists(), "mmsgate-admin is not installed: make install (pip install -e .) creates it"
    help_ = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "tenants" in help_.stdout
    failed = subprocess.run([str(script), "tenants", "show", "tnt_ghost"], capture_output=True, text=True,
                            timeout=60, env=os.environ.copy())
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.strip() == "mmsgate-admin: no tenant tnt_ghost (mmsgate-admin tenants list shows them)"
    shown = subprocess.run([str(script), "tenants", "show", TENANT], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == TENANT


# -- version -------------------------------------------------------------------------------------------
def test_version_prints_the_projects_version(capsys):
    from shared.api.version import VERSION

    assert main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == (f"mmsgate-admin {VERSION}\n", "")


def test_the_console_script_prints_the_version():
    """What an operator types: the installed entry point (tools.admin_cli:run), in a fresh interpreter."""
    from shared.api.version import VERSION

    done = subprocess.run([sys.executable, "-c", "from tools.admin_cli import run; run()", "--version"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"mmsgate-admin {VERSION}\n", "")
