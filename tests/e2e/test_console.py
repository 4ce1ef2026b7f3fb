"""The local console in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
which ``make browser`` installs) opens the page, a message is sent through the API, and its row reaches
``delivered`` on the page, with its provider id, its signed events in the inbox and the simulator's record.

Skipped, saying why, only where Chromium or its driver is not installed (``make test`` installs them with
apt-get; a machine where apt cannot is the one case)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import fictional
from tools.seed import DEV_SENDER, DEV_TWILIO_SENDER

# Every test here needs the local stack: the fast tier (-m "not stack") does not even import this module.
pytestmark = pytest.mark.stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-proxy-server",
         "--window-size=1400,1000")


@pytest.fixture
def browser(tmp_path):
    missing = [p for p in (CHROMIUM, DRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: `make browser` installs Debian's chromium and "
                    "chromium-driver (apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER, log_output=str(tmp_path / "driver.log")),
                              options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _cell(driver, selector: str) -> str:
    """The text of the first element matching ``selector``, or "" (the page re-renders every second)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        found = driver.find_elements("css selector", selector)
        return found[0].text.strip() if found else ""
    except StaleElementReferenceException:
        return ""


def _until(driver, predicate, timeout: float, message: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: predicate(d))
    except TimeoutException:
        raise AssertionError(f"{message}; page text:\n{driver.find_element('tag name', 'body').text[:3000]}") from None


def test_a_sent_message_reaches_delivered_on_the_console(env, browser, tmp_path):
    dev = env.stack.urls["dev"]
    env.store.accounts.put_tenant(env.tenant_id, {"webhook_url": f"{dev}/inbox/{env.tenant_id}"})
    browser.get(f"{dev}/_dev/console")
    assert browser.title == "mmsgate local console"
    _until(browser, lambda d: _cell(d, "#messages-body tr.empty"), 15, "the page never rendered the state")

    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(12), "body": "on the page",
                                                           "media_urls": [env.sample_media_url]})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    row = f'#messages-body tr[data-message-id="{message_id}"]'

    _until(browser, lambda d: _cell(d, f"{row} .status-cell").startswith("delivered"), 30,
           f"{message_id} never showed delivered")
    provider_id = env.message(message_id)["provider_id"]
    assert provider_id and _cell(browser, f"{row} .provider-id") == provider_id
    timeline = _cell(browser, f"{row} .timeline")
    for status in ("pending", "queued", "sending", "sent", "delivered"):
        assert status in timeline, timeline

    # its two events were delivered to the inbox, signed, and the simulator shows what it received
    _until(browser, lambda d: len(d.find_elements("css selector", "#inbox-body td.signature.ok")) == 2, 20,
           "two validly signed events in the inbox")
    assert _cell(browser, f'#simulator-body tr[data-provider-id="{provider_id}"]')
    _until(browser, lambda d: {_cell(d, f'#deliveries-body tr:nth-child({i}) td:nth-child(4)') for i in (1, 2)}
           == {"delivered"}, 20, "both deliveries shown as delivered")
    assert _cell(browser, f"{row} .carrier") == "telnyx"

    # the second carrier: a send pinned to Twilio shows its carrier, and what the Twilio simulator received
    env.store.accounts.put_tenant(env.tenant_id, {
        "senders": {DEV_SENDER: {"sms": True, "mms": True}, DEV_TWILIO_SENDER: {"sms": True, "mms": True,
                                                                                 "carrier": "twilio"}},
        "sender_numbers": sorted([DEV_SENDER, DEV_TWILIO_SENDER])})
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(13), "body": "through twilio",
                                                           "carrier": "twilio"})
    assert response.status_code == 200, response.text
    twilio_row = f'#messages-body tr[data-message-id="{response.json()["data"]["id"]}"]'
    _until(browser, lambda d: _cell(d, f"{twilio_row} .status-cell").startswith("delivered"), 30,
           "the Twilio send never showed delivered")
    assert _cell(browser, f"{twilio_row} .carrier") == "twilio"
    sid = env.message(response.json()["data"]["id"])["provider_id"]
    _until(browser, lambda d: _cell(d, f'#twilio-body tr[data-provider-id="{sid}"]'), 10,
           "the Twilio simulator's record on the page")
    browser.save_screenshot(str(tmp_path / "console.png"))


def test_a_templated_message_shows_its_template_and_version(env, browser):
    created = env.api.post("/api/v1/templates", json={"name": "console", "body": "Hi ((name))"})
    assert created.status_code == 201, created.text
    template_id = created.json()["data"]["id"]
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(13), "template_id": template_id,
                                                           "personalisation": {"name": "Ann"}})
    assert response.status_code == 200, response.text
    row = f'#messages-body tr[data-message-id="{response.json()["data"]["id"]}"]'
    browser.get(f"{env.stack.urls['dev']}/_dev/console")
    _until(browser, lambda d: _cell(d, f"{row} .template") == f"template {template_id} v1", 15,
           "the message's template never showed")


def test_a_tracked_smart_encoded_sms_shows_its_encoding_segments_short_link_and_click(env, browser):
    import re

    import httpx

    from shared.rules.segments import count_segments

    dev = env.stack.urls["dev"]
    original = "https://shop.example.com/p?ref=console&x=(1)"
    body = f"\u201cSpring sale\u201d \u2013 20% off\u2026 {original}"
    assert count_segments(body)[0] == "UCS-2"  # the curly quotes, the dash and the ellipsis, as written
    response = env.api.post("/api/v1/messages/sms", json={
        "to": fictional(14), "body": body, "smart_encoding": True, "tracking": {},
        "webhook_url": f"{dev}/inbox/{env.tenant_id}"})
    assert response.status_code == 200, response.text
    message_id = response.json()["data"]["id"]
    stored = env.api.get(f"/api/v1/messages/{message_id}").json()["data"]
    [code] = re.findall(r"/l/([A-Za-z0-9_-]{12})", stored["body"])
    assert original not in stored["body"]
    assert count_segments(stored["body"]) == ("GSM-7", 1)

    row = f'#messages-body tr[data-message-id="{message_id}"]'
    browser.get(f"{dev}/_dev/console")
    _until(browser, lambda d: _cell(d, f"{row} .encoding") == "GSM-7, 1 segment", 15,
           "the message's encoding and segments never showed")
    assert _cell(browser, f"{row} .link") == f"/l/{code} \u2192 {original}"
    assert "link.clicked" not in _cell(browser, f"{row} .events")

    [short] = re.findall(r"\S+/l/" + code, stored["body"])
    clicked = httpx.get(short, follow_redirects=False, timeout=10, trust_env=False)
    assert (clicked.status_code, clicked.headers["location"]) == (302, original)
    _until(browser, lambda d: f"link.clicked: delivered {original} at " in _cell(d, f"{row} .events"), 30,
           "the click never showed as a delivered link.clicked event")


def test_a_heic_shows_as_the_jpeg_it_was_sent_as_with_its_original_type(env, browser, media_host):
    import re

    from tests.e2e.test_media_handsets import TOLL_FREE, iphone_heic

    media_host.reset()
    url = media_host.put("/IMG_0050.HEIC", iphone_heic(), "image/heic")
    response = env.api.post("/api/v1/messages/sms", json={"to": fictional(15), "body": "From the beach",
                                                          "media_urls": [url]})
    assert response.status_code == 200, response.text
    row = f'#messages-body tr[data-message-id="{response.json()["data"]["id"]}"]'
    browser.get(f"{env.stack.urls['dev']}/_dev/console")
    _until(browser, lambda d: _cell(d, f"{row} .media"), 15, "the message's media never showed")
    shown = re.fullmatch(r"image/jpeg (\d+) KB \(from image/heic (\d+\.\d) MB\)", _cell(browser, f"{row} .media"))
    assert shown, _cell(browser, f"{row} .media")
    assert int(shown.group(1)) * 1024 < TOLL_FREE and 2.4 < float(shown.group(2)) < 4.0
    assert not _cell(browser, f"{row} .encoding")  # an MMS has no SMS encoding
    media_host.reset()
