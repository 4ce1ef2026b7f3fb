"""API-key validity (shared/rules/api_keys.py), pure: the key's document as read decides, and a key this
instance noted under another tenant is read again under its own."""

from __future__ import annotations

import pytest

from shared.rules.api_keys import ApiKeyRecord, KeyCheck, KeyVerdict, check_key

V = KeyVerdict
SECRET = "A" * 32  # ids.new_api_key's secret: 20 random bytes as 32 URL-safe characters
NAMING_A = f"mk_live_{SECRET}_tnt_a"  # a key whose text names tenant tnt_a
PLAIN = f"mk_live_{SECRET}"  # a key made before keys named their tenant


def test_a_key_of_its_tenant_is_valid():
    check = check_key(NAMING_A, ApiKeyRecord("tnt_a"), read_for="tnt_a")
    assert check == KeyCheck(V.VALID, "tnt_a") and check.valid


def test_a_plain_key_read_on_its_own_is_valid_for_the_tenant_its_document_names():
    assert check_key(PLAIN, ApiKeyRecord("tnt_b")) == KeyCheck(V.VALID, "tnt_b")


def test_a_key_without_a_document_is_unknown():
    check = check_key(NAMING_A, None, read_for="tnt_a")
    assert check.verdict is V.UNKNOWN and not check.valid


@pytest.mark.parametrize("api_key,read_for", [(NAMING_A, "tnt_a"), (PLAIN, "tnt_a"), (PLAIN, None)])
def test_a_revoked_key_is_refused_at_once(api_key, read_for):
    check = check_key(api_key, ApiKeyRecord("tnt_a", revoked=True), read_for=read_for)
    assert check.verdict is V.REVOKED and not check.valid


def test_a_key_naming_one_tenant_whose_document_names_another_is_refused():
    # Never made so: a forged or corrupted key must not be let into either tenant.
    assert check_key(NAMING_A, ApiKeyRecord("tnt_b")).verdict is V.WRONG_TENANT
    assert check_key(NAMING_A, ApiKeyRecord("tnt_b"), read_for="tnt_a").verdict is V.WRONG_TENANT
    assert check_key(NAMING_A, ApiKeyRecord("tnt_b"), read_for="tnt_b").verdict is V.WRONG_TENANT


def test_a_key_naming_its_tenant_read_beside_another_tenant_is_refused_not_read_again():
    assert check_key(NAMING_A, ApiKeyRecord("tnt_a"), read_for="tnt_c").verdict is V.WRONG_TENANT


def test_a_plain_key_noted_under_another_tenant_is_read_again_under_its_own():
    # A local stack seeded again: this instance's note says tnt_old, the key now belongs to tnt_new.
    check = check_key(PLAIN, ApiKeyRecord("tnt_new"), read_for="tnt_old")
    assert check == KeyCheck(V.STALE_NOTE, "tnt_new") and not check.valid


def test_a_document_naming_no_tenant_is_refused():
    assert check_key(PLAIN, ApiKeyRecord(None)).verdict is V.WRONG_TENANT
    assert check_key(PLAIN, ApiKeyRecord(None), read_for="tnt_a").verdict is V.WRONG_TENANT


def test_the_record_reads_the_stored_document():
    assert ApiKeyRecord.from_doc({"tenant_id": "tnt_a", "revoked": False, "prefix": "mk_live_AAAA"}) == \
        ApiKeyRecord("tnt_a", revoked=False)
    assert ApiKeyRecord.from_doc({"tenant_id": "tnt_a", "revoked": True}).revoked
    assert ApiKeyRecord.from_doc({"tenant_id": "tnt_a"}) == ApiKeyRecord("tnt_a", revoked=False)


@pytest.mark.parametrize("owner", [None, 42, ["tnt_a"]])
def test_a_document_whose_tenant_is_not_a_name_names_none(owner):
    assert ApiKeyRecord.from_doc({"tenant_id": owner}).tenant_id is None


def test_the_key_texts_here_are_what_new_api_key_makes():
    # The named and plain forms above must be the ones ids.new_api_key makes, or these tests test nothing.
    from shared.rules.ids import new_api_key, tenant_named_by

    assert tenant_named_by(NAMING_A) == "tnt_a" and tenant_named_by(PLAIN) is None
    assert len(new_api_key("tnt_a")) == len(NAMING_A) and new_api_key("tnt_a").endswith("_tnt_a")
    assert len(new_api_key()) == len(PLAIN)


def test_a_key_made_against_the_emulators_starts_mk_test_and_still_names_its_tenant():
    from shared.rules.ids import new_api_key, tenant_named_by

    local = new_api_key("tnt_a", live=False)
    assert local.startswith("mk_test_") and len(local) == len(NAMING_A) and tenant_named_by(local) == "tnt_a"
    assert new_api_key("tnt_a").startswith("mk_live_") and new_api_key(live=False).startswith("mk_test_")
    assert tenant_named_by("mk_test_devlocal_0000000000000000") is None  # the dev key names no tenant


@pytest.mark.parametrize(("emulator", "prefix"), [("127.0.0.1:8681", "mk_test_"), ("", "mk_live_")])
def test_mmsgate_admin_keys_create_labels_the_key_by_where_it_runs(monkeypatch, emulator, prefix):
    # keys create against the emulators (make dev, --local) makes mk_test_ keys; against a project, mk_live_.
    import argparse

    from tools import admin, admin_cli

    made = {}
    monkeypatch.setattr(admin_cli, "tenant_doc", lambda ctx, tenant_id: {"name": "a"})
    monkeypatch.setattr(admin, "create_api_key", lambda store, tenant_id, api_key: made.setdefault("key", api_key))
    ctx = admin_cli.Ctx(env={"FIRESTORE_EMULATOR_HOST": emulator} if emulator else {}, _accounts=object())
    answer = admin_cli.keys_create(ctx, argparse.Namespace(tenant="tnt_a"))
    assert answer["api_key"] == made["key"] and made["key"].startswith(prefix) and made["key"].endswith("_tnt_a")
