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
