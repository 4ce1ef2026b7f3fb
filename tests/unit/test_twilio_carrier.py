"""shared.carriers.twilio: classification, status and error tables, X-Twilio-Signature, and the form POSTs as
Reports. Expected values are twilio.md's (section numbers below), never the module's own constants."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from shared.carriers import twilio
from shared.carriers.provider import Capabilities, Kind
from shared.carriers.signatures import BadSignature
from shared.carriers.telnyx import TELNYX_CAPABILITIES
from shared.carriers.telnyx_events import Report
from shared.rules.errors import ApiError, ErrorCode
from shared.rules.status import Status, from_provider

NOW = dt.datetime(2026, 8, 21, 14, 32, 5, tzinfo=dt.UTC)
SID = "MM11111111111111111111111111111111"
HOOK = "https://gw.example.com/webhooks/twilio/status?leg=msg_abc123"

# -- classify (§1 Errors, §3, §7) ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "kind"), [
    (201, None, Kind.ACCEPTED),
    (400, "21610", Kind.OPT_OUT),  # §3/§5: STOP, 400/21610
    (400, 21610, Kind.OPT_OUT),  # Twilio's body carries the code as an int (§1 Errors)
    (429, "20429", Kind.TRANSIENT),  # §3: never processed, safe to retry
    (429, None, Kind.TRANSIENT),
    (400, "20429", Kind.TRANSIENT),
    (400, "21611", Kind.TRANSIENT),  # §3/§7: sender queue full at create
    (500, None, Kind.TRANSIENT),
    (503, "20500", Kind.TRANSIENT),
    (408, None, Kind.TRANSIENT),
    (400, "21211", Kind.PERMANENT),  # invalid To
    (400, "21408", Kind.PERMANENT),  # region disabled
    (400, "21612", Kind.PERMANENT),
    (400, "21614", Kind.PERMANENT),
    (401, "20003", Kind.PERMANENT),
    (404, "20404", Kind.PERMANENT),
    (400, None, Kind.PERMANENT),
])
def test_classify(status, code, kind):
    assert twilio.classify(status, code) is kind


# -- statuses (§2) --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("twilio_status", "ours"), [
    ("accepted", None), ("scheduled", None), ("queued", None), ("sending", None),  # no change of ours
    ("sent", Status.SENT),
    ("delivered", Status.DELIVERED),
    ("read", Status.DELIVERED),
    ("undelivered", Status.UNDELIVERED),
    ("failed", Status.FAILED),
    ("canceled", Status.FAILED),
    ("partially_delivered", None), ("receiving", None), ("received", None), ("brand_new_status", None),
])
def test_every_twilio_status_reaches_our_status_machine_through_from_provider(twilio_status, ours):
    report = twilio.parse_status_callback(HOOK, {"MessageSid": SID, "MessageStatus": twilio_status}, NOW)
    mapped = from_provider(report.event_type, report.recipient_status)
    assert (mapped[0] if mapped else None) == ours
    assert mapped is None or mapped[1] is False  # none of Twilio's statuses is "sent, but final"


def test_the_status_table_speaks_the_neutral_vocabulary():
    assert twilio.neutral_status("queued") == "queued"
    assert twilio.neutral_status("accepted") == "queued"
    assert twilio.neutral_status("sending") == "sending"
    assert twilio.neutral_status("undelivered") == "delivery_failed"
    assert twilio.neutral_status("failed") == "sending_failed"
    assert all(row.source for row in twilio.STATUS_TABLE.values())
    # §2's enum: every value is either mapped or deliberately left unmapped
    enum = {"queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving", "received", "accepted",
            "scheduled", "read", "partially_delivered", "canceled"}
    assert enum - set(twilio.STATUS_TABLE) == {"receiving", "received", "partially_delivered"}


# -- error codes (§3, §8) -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "ours"), [
    ("21610", ErrorCode.RECIPIENT_OPTED_OUT),
    ("21211", ErrorCode.INVALID_PHONE_NUMBER),
    ("21614", ErrorCode.INVALID_PHONE_NUMBER),
    ("21408", ErrorCode.PROVIDER_REJECTED),
    ("21612", ErrorCode.PROVIDER_REJECTED),
    ("21611", ErrorCode.PROVIDER_UNAVAILABLE),
    (20429, ErrorCode.PROVIDER_UNAVAILABLE),
    ("30001", ErrorCode.PROVIDER_UNAVAILABLE),
    ("30002", ErrorCode.PROVIDER_REJECTED),
    ("30003", ErrorCode.DELIVERY_FAILED),
    ("30004", ErrorCode.DELIVERY_FAILED),
    ("30005", ErrorCode.DELIVERY_FAILED),
    ("30006", ErrorCode.DELIVERY_FAILED),
    ("30007", ErrorCode.DELIVERY_FAILED),
    ("30008", ErrorCode.DELIVERY_FAILED),
    ("30036", ErrorCode.PROVIDER_UNAVAILABLE),
    ("12300", ErrorCode.MEDIA_TYPE_UNSUPPORTED),
    ("63019", ErrorCode.MEDIA_FETCH_FAILED),
    ("30999", ErrorCode.DELIVERY_FAILED),  # an unlisted delivery error
    ("21999", ErrorCode.PROVIDER_REJECTED),  # an unlisted create error
    (None, ErrorCode.PROVIDER_REJECTED),
])
def test_error_table(code, ours):
    assert twilio.error_code_for(code) is ours


# -- X-Twilio-Signature (§4 test vectors) ---------------------------------------------------------------------

TOKEN_A = "12345"
URL_A = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS_A = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234", "From": "+14158675309",
            "To": "+18005551212"}
TOKEN_B = "0123456789abcdef0123456789abcdef"
URL_B = "https://gw.example.com/twilio/status?tenant=acme"
PARAMS_B = {"AccountSid": "AC00000000000000000000000000000001", "ApiVersion": "2010-04-01", "From": "+15005550006",
            "MessageSid": "MM11111111111111111111111111111111", "MessageStatus": "delivered",
            "RawDlrDoneDate": "2608211432", "SmsSid": "MM11111111111111111111111111111111", "SmsStatus": "delivered",
            "To": "+15558675310"}
BODY_C = b'{"property": "value", "boolean": true}'
HASH_C = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


def test_vector_a():
    assert twilio.expected_signature(TOKEN_A, URL_A, PARAMS_A) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio.expected_signature(TOKEN_A, "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                                     PARAMS_A) == "kvajT1Ptam85bY51eRf/AJRuM3w="
    twilio.verify_twilio(URL_A, PARAMS_A, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", TOKEN_A)
    # the form as parse_qs gives it (lists of values) signs the same
    twilio.verify_twilio(URL_A, {k: [v] for k, v in PARAMS_A.items()}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", TOKEN_A)


def test_vector_b_and_its_port_variants():
    assert twilio.expected_signature(TOKEN_B, URL_B, PARAMS_B) == "HOh3dGkHZqk/KB2C7xof4FTN0+M="
    assert twilio.expected_signature(TOKEN_B, "https://gw.example.com:443/twilio/status?tenant=acme",
                                     PARAMS_B) == "JeHe3Ch9O+9yXGyoRlSZaJP7iLk="
    for url in (URL_B, "https://gw.example.com:443/twilio/status?tenant=acme",
                "https://gw.example.com:8443/twilio/status?tenant=acme"):  # §4: TPY accepts B at :8443 too
        twilio.verify_twilio(url, PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", TOKEN_B)
    twilio.verify_twilio(URL_B, PARAMS_B, "JeHe3Ch9O+9yXGyoRlSZaJP7iLk=", TOKEN_B)  # signed with :443


@pytest.mark.parametrize("url", [URL_B + "#rc=3", "http://gw.example.com/twilio/status?tenant=acme"])
def test_vector_b_is_rejected_with_a_fragment_or_plain_http(url):  # §4: TPY rejects both
    with pytest.raises(BadSignature):
        twilio.verify_twilio(url, PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", TOKEN_B)


def test_vector_c_json_body():
    assert hashlib.sha256(BODY_C).hexdigest() == HASH_C
    url = f"{URL_A}&bodySHA256={HASH_C}"
    assert twilio.expected_signature(TOKEN_A, url, {}) == "a9nBmqA0ju/hNViExpshrM61xv4="
    twilio.verify_twilio(url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", TOKEN_A, raw_body=BODY_C)
    with pytest.raises(BadSignature):  # the URL's hash must be the body's
        twilio.verify_twilio(url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", TOKEN_A, raw_body=BODY_C + b" ")


def test_repeated_names_sign_each_value_deduplicated_and_sorted():  # §4 step 2
    one = twilio.expected_signature(TOKEN_A, URL_A, {"MediaUrl": ["https://b", "https://a", "https://b"]})
    assert one == twilio.expected_signature(TOKEN_A, URL_A, {"MediaUrl": ["https://a", "https://b"]})
    import base64
    import hmac
    manual = base64.b64encode(hmac.new(b"12345", (URL_A + "MediaUrlhttps://aMediaUrlhttps://b").encode(),
                                       hashlib.sha1).digest()).decode()
    assert one == manual


@pytest.mark.parametrize(("params", "signature", "token"), [
    (PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", "another-token"),
    ({**PARAMS_B, "MessageStatus": "failed"}, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", TOKEN_B),
    (PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+M", TOKEN_B),  # shorter
    (PARAMS_B, "", TOKEN_B),
    (PARAMS_B, None, TOKEN_B),
    (PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", ""),  # no token configured: nothing verifies
    (PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+\udc80", TOKEN_B),
    ({**PARAMS_B, "Body": "\ud800"}, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", TOKEN_B),
])
def test_bad_signatures_raise_bad_signature(params, signature, token):
    with pytest.raises(BadSignature):
        twilio.verify_twilio(URL_B, params, signature, token)


@pytest.mark.parametrize("url", ["https://gw.example.com:99999/x", "https://gw.example.com:abc/x", "https://[::1/x"])
def test_a_malformed_url_is_a_bad_signature_not_a_crash(url):
    with pytest.raises(BadSignature):
        twilio.verify_twilio(url, PARAMS_B, "HOh3dGkHZqk/KB2C7xof4FTN0+M=", TOKEN_B)


# -- status callbacks (§4) ------------------------------------------------------------------------------------


def callback(**fields: str) -> dict[str, str]:
    base = {"AccountSid": "AC00000000000000000000000000000001", "ApiVersion": "2010-04-01", "From": "+15005550006",
            "MessageSid": SID, "MessageStatus": "delivered", "SmsSid": SID, "SmsStatus": "delivered",
            "To": "+15558675310"}
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


def test_a_delivered_callback_is_a_finalized_report_for_the_leg_in_the_url():
    report = twilio.parse_status_callback(HOOK, callback(RawDlrDoneDate="2608211432"), NOW)
    assert isinstance(report, Report)
    assert report.event_type == "message.finalized"
    assert report.recipient_status == "delivered"
    assert report.provider_id == SID
    assert report.leg_from_url == "msg_abc123"
    assert report.recipient_number == "+15558675310"
    assert report.payload["from"] == {"phone_number": "+15005550006"}
    assert report.payload["webhook_url"] == HOOK
    assert "errors" not in report.payload
    assert report.occurred_at == NOW


def test_the_event_id_is_stable_per_sid_and_status_so_a_duplicate_dedupes():
    first = twilio.parse_status_callback(HOOK, callback(), NOW)
    again = twilio.parse_status_callback(HOOK, callback(), NOW + dt.timedelta(minutes=3))
    sent = twilio.parse_status_callback(HOOK, callback(MessageStatus="sent", SmsStatus="sent"), NOW)
    assert first.event_id == again.event_id
    assert sent.event_id != first.event_id
    other = twilio.parse_status_callback(HOOK, callback(MessageSid="SM" + "2" * 32, SmsSid=None), NOW)
    assert other.event_id != first.event_id


def test_an_undelivered_callback_carries_the_error_as_the_report_service_reads_it():
    report = twilio.parse_status_callback(HOOK, callback(MessageStatus="undelivered", SmsStatus="undelivered",
                                                         ErrorCode="30003"), NOW)
    assert report.event_type == "message.finalized"
    assert report.recipient_status == "delivery_failed"
    [error] = report.payload["errors"]
    assert error["code"] == "30003"
    assert error["title"] and error["detail"]


def test_a_failed_callback_and_its_error_message():
    report = twilio.parse_status_callback(HOOK, callback(MessageStatus="failed", ErrorCode="30007",
                                                         ErrorMessage="Carrier violation"), NOW)
    assert from_provider(report.event_type, report.recipient_status) == (Status.FAILED, False)
    assert report.payload["errors"][0]["detail"] == "Carrier violation"


def test_to_is_not_guaranteed_and_parse_qs_lists_are_accepted():  # §4: To is UNCONFIRMED as guaranteed
    form = {k: [v] for k, v in callback(To=None, MessageStatus="sent").items()}
    report = twilio.parse_status_callback(HOOK, form, NOW)
    assert report.recipient_number is None
    assert report.event_type == "message.sent"
    assert report.leg_from_url == "msg_abc123"


def test_smssid_and_smsstatus_stand_in_for_the_message_fields():
    report = twilio.parse_status_callback(HOOK, callback(MessageSid=None, MessageStatus=None,
                                                         SmsStatus="sent"), NOW)
    assert report.provider_id == SID and report.recipient_status == "sent"


def test_a_naive_received_at_is_read_as_utc():
    report = twilio.parse_status_callback(HOOK, callback(), NOW.replace(tzinfo=None))
    assert report.occurred_at == NOW


@pytest.mark.parametrize("form", [
    {},
    callback(MessageSid=None, SmsSid=None),
    callback(MessageStatus=None, SmsStatus=None),
    callback(MessageSid="../../x", SmsSid=None),
    callback(MessageSid="SM123", SmsSid=None),
    callback(MessageSid="__x__", SmsSid=None),
    callback(MessageSid="MM" + "g" * 32, SmsSid=None),
    callback(MessageStatus="Delivered"),
    callback(MessageStatus="delivered/../x"),
    callback(MessageStatus="x" * 33),
    callback(ErrorCode="30003abc"),
    callback(ErrorCode="-1"),
    callback(To="+1555\u0000"),
    callback(To="+1" * 40),
    callback(From="\u00e9\u00e9"),
    callback(AccountSid="AC1"),
    callback(ErrorMessage="x" * 5000),
    callback(To="\ud800"),
    {**callback(), "MessageSid": [SID, "SM" + "3" * 32]},  # one field, two values
    {**callback(), "MessageStatus": ["delivered", "failed"]},
    {**callback(), "To": 5},
    {**callback(), "To": [None]},
    {**callback(), 7: "x"},
    {**callback(), "\udcff": "x"},
    {f"X{i}": "y" for i in range(1000)},
])
def test_hostile_callbacks_are_400_validation_errors(form):
    with pytest.raises(ApiError) as caught:
        twilio.parse_status_callback(HOOK, form, NOW)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR
    assert caught.value.status == 400


@pytest.mark.parametrize("url", ["", "https://gw.example.com/" + "x" * 3000, "https://gw.example.com/\ud800", None])
def test_a_hostile_url_is_a_400(url):
    with pytest.raises(ApiError) as caught:
        twilio.parse_status_callback(url, callback(), NOW)
    assert caught.value.status == 400


def test_a_foreign_leg_marker_names_no_leg():
    report = twilio.parse_status_callback("https://gw.example.com/s?leg=../../etc", callback(), NOW)
    assert report.leg_from_url is None


# -- inbound (§5) ---------------------------------------------------------------------------------------------


def inbound(**fields: str | None) -> dict[str, str]:
    base = {"MessageSid": SID, "SmsSid": SID, "SmsMessageSid": SID, "AccountSid": "AC" + "0" * 31 + "1",
            "From": "+15558675310", "To": "+15005550006", "Body": "Hello there", "NumMedia": "2",
            "NumSegments": "1", "MediaUrl0": f"https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/{SID}/Media/ME1",
            "MediaContentType0": "image/jpeg",
            "MediaUrl1": f"https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/{SID}/Media/ME2",
            "MediaContentType1": "image/png", "SmsStatus": "received", "ApiVersion": "2010-04-01",
            "FromCity": "SAN FRANCISCO", "FromCountry": "US"}
    return {k: v for k, v in {**base, **fields}.items() if v is not None}


def test_an_inbound_mms_is_a_telnyx_shaped_message_received():
    from shared.services import received  # what the inbound service reads it with

    report = twilio.parse_inbound("https://gw.example.com/webhooks/twilio/inbound", inbound(), NOW)
    assert report.event_type == "message.received"
    assert report.provider_id == SID
    msg = received.parse(report)
    assert msg.provider_id == SID
    assert msg.sender == "+15558675310"
    assert msg.numbers == ("+15005550006",)
    assert msg.text == "Hello there"
    assert msg.mms is True
    assert [(a.url, a.content_type, a.problem) for a in msg.attachments] == [
        (f"https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/{SID}/Media/ME1", "image/jpeg", None),
        (f"https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/{SID}/Media/ME2", "image/png", None)]
    assert msg.received_at == NOW


def test_an_inbound_sms_and_its_replay():
    first = twilio.parse_inbound("https://gw.example.com/in", inbound(NumMedia="0", MediaUrl0=None,
                                                                      MediaUrl1=None), NOW)
    again = twilio.parse_inbound("https://gw.example.com/in", inbound(NumMedia="0", MediaUrl0=None,
                                                                      MediaUrl1=None), NOW)
    assert first.payload["type"] == "SMS" and first.payload["media"] == []
    assert first.event_id == again.event_id


def test_inbound_media_without_its_url_is_kept_for_received_to_mark_unavailable():
    from shared.services import received

    report = twilio.parse_inbound("https://gw.example.com/in", inbound(NumMedia="3"), NOW)
    attachments = received.parse(report).attachments
    assert len(attachments) == 3 and attachments[2].problem is not None


def test_inbound_media_counted_from_the_urls_when_num_media_is_missing():
    report = twilio.parse_inbound("https://gw.example.com/in", inbound(NumMedia=None), NOW)
    assert len(report.payload["media"]) == 2


def test_a_huge_num_media_is_bounded():
    report = twilio.parse_inbound("https://gw.example.com/in", inbound(NumMedia="9999"), NOW)
    assert len(report.payload["media"]) <= 100


def test_an_inbound_keyword_with_advanced_opt_out_keeps_its_text():  # §5: still forwarded, OptOutType added
    report = twilio.parse_inbound("https://gw.example.com/in", inbound(Body="STOP", NumMedia="0", OptOutType="STOP",
                                                                       MediaUrl0=None, MediaUrl1=None), NOW)
    assert report.payload["text"] == "STOP"


@pytest.mark.parametrize("form", [
    inbound(MessageSid=None, SmsSid=None, SmsMessageSid=None),
    inbound(MessageSid="MM/1"),
    inbound(NumMedia="two"),
    inbound(NumMedia="\u00b2"),
    inbound(Body="\ud800"),
    inbound(MediaUrl0="https://x/" + "a" * 3000),
    {**inbound(), "Body": ["a", "b"]},
    {**inbound(), "From": {"phone_number": "+1"}},
])
def test_hostile_inbound_forms_are_400(form):
    with pytest.raises(ApiError) as caught:
        twilio.parse_inbound("https://gw.example.com/in", form, NOW)
    assert caught.value.code is ErrorCode.VALIDATION_ERROR and caught.value.status == 400


# -- capabilities ---------------------------------------------------------------------------------------------


def test_capabilities():
    assert isinstance(twilio.TWILIO_CAPABILITIES, Capabilities)
    assert twilio.TWILIO_CAPABILITIES.group_mms is False
    assert twilio.TWILIO_CAPABILITIES.max_media_count == 10  # §1 MediaUrl
    assert twilio.TWILIO_CAPABILITIES.max_media_bytes <= 5 * 1024 * 1024  # §8: < 5 MB
    assert twilio.TWILIO_CAPABILITIES.countries == {"US", "CA"}  # §8
    assert TELNYX_CAPABILITIES.group_mms is True
    assert TELNYX_CAPABILITIES.max_media_bytes == 1_048_576  # telnyx.md §0.5: < 1 MB
    assert TELNYX_CAPABILITIES.max_media_count == 10
    with pytest.raises(AttributeError):
        TELNYX_CAPABILITIES.mms = False  # type: ignore[misc]
