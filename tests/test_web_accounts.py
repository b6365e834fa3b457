"""Accounts in the browser (issue 17): register in each mode, sign in with a password, change it, see
and replace one's token, make and revoke a service token.  Debian's Chromium driven by Playwright
against a live server (tests/browser.py).  Each test fails on a console error (but those a step
expects), an uncaught exception in a page, any 5xx answer and any request to another host.
"""

from __future__ import annotations

import re

import pytest
import requests
from browser import fill_sign_in, watched_context
from browser import browser  # noqa: F401  (a fixture)
from conftest import LiveServer, make_settings

from opus.auth.admin import UserAdmin

CHEAP = {"PASSWORD_HASH_TIME_COST": 1, "PASSWORD_HASH_MEMORY_COST": 1024}
PASSWORD = "a long enough password"


def make_server(tmp_path, mode: str) -> LiveServer:
    server = LiveServer(make_settings(tmp_path, ALLOW_ANONYMOUS=False, REGISTRATION=mode, **CHEAP))
    _, server.root_token = UserAdmin(server.services.users).add("root", admin=True)
    return server


@pytest.fixture
def site(tmp_path, browser):  # noqa: F811
    """A server (make_server, in a registration mode) and a watched browser context on its host only
    (tests/browser.py); after the test the context is closed before the server stops (its pending
    requests would end in errors), then checked."""
    made = []

    def make(mode: str):
        server = make_server(tmp_path, mode)
        made.append((server, watched_context(browser, server.url)))
        return made[-1]

    yield make
    for server, context in made:
        context.close()
        server.stop()
    for _server, context in made:
        context.watch.check()


def register(page, url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/web/register")
    page.fill("#register-name", name)
    page.fill("#register-email", f"{name}@example.org")
    page.fill("#register-password", password)
    page.fill("#register-password2", password)
    page.click("#register-form button[type=submit]")


def sign_in(page, url: str, name: str, secret: str) -> None:
    page.goto(f"{url}/web/signin")
    fill_sign_in(page, name, secret)
    page.wait_for_load_state()


def sign_out(page) -> None:
    page.click("form[action$='/web/signout'] button")
    page.wait_for_url(re.compile(r"/web/signin"))


def test_open_registration_password_token_and_service_tokens(site):
    server, context = site("open")
    page = context.new_page()
    register(page, server.url, "carol")
    page.wait_for_url(f"{server.url}/web/profile")
    page.wait_for_selector("#account-name")
    assert page.locator("#account-name").inner_text() == "carol"
    assert page.locator("#account-roles").inner_text() == "user"
    assert "of no limit" in page.locator("#limit-jobs").inner_text()
    # The address given at registration is not used until confirmed; a new one can be given here.
    assert page.locator("#account-email").input_value() == "carol@example.org"
    assert page.locator("#email-state").get_attribute("data-confirmed") == "no"
    page.fill("#account-email", "carol@lab.example.org")
    page.click("#email-form button[type=submit]")
    page.wait_for_selector("#email-state:has-text('carol@lab.example.org is not confirmed')")
    # See and replace the token: the new one works for scripts.
    old_id = page.locator("#token-id").inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#replace-token")
    token = page.locator("#shown-token").inner_text()
    assert re.fullmatch(r"[0-9a-f]{16}\.\S+", token) and page.locator("#token-id").inner_text() != old_id
    assert requests.get(f"{server.url}/rest/dummy", auth=("carol", token)).status_code == 200
    # Change the password (the session goes on with its new cookie), then sign in with the new one.
    page.fill("#current-password", PASSWORD)
    page.fill("#new-password", "another long password")
    page.fill("#new-password2", "another long password")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("text=Your password is changed")
    # A service token, read-only, then revoked.
    page.fill("#token-name", "notebook")
    page.select_option("#token-scope", "read")
    page.click("#service-token-form button[type=submit]")
    page.wait_for_selector("#service-tokens tr[data-token]")
    service = page.locator("#shown-token").last.inner_text()
    bearer = {"Authorization": f"Bearer {service}"}
    assert requests.get(f"{server.url}/rest/dummy", headers=bearer).status_code == 200
    assert requests.post(f"{server.url}/rest/dummy", headers=bearer, data={"text": "x"}).status_code == 403
    page.click("#service-tokens button[aria-label='Revoke notebook']")
    page.wait_for_selector("#service-tokens tr[data-token]", state="detached")
    assert requests.get(f"{server.url}/rest/dummy", headers=bearer).status_code == 401
    sign_out(page)
    with context.watch.allowing(r"status of 401"):  # the browser logs the refused sign-in
        sign_in(page, server.url, "carol", PASSWORD)
    assert page.locator("#signin-form").is_visible()  # the old password no longer works
    sign_in(page, server.url, "carol", "another long password")
    assert page.url == f"{server.url}/web/"
    assert page.locator("#opus-user").inner_text().startswith("carol")


def test_approved_registration_then_an_admin_enables_the_account(site):
    server, context = site("approved")
    page = context.new_page()
    page.goto(f"{server.url}/web/register")
    assert page.locator("#register-approval-note").is_visible()
    register(page, server.url, "dave")
    assert "must approve" in page.locator("#register-done").inner_text()
    with context.watch.allowing(r"status of 401"):  # not approved yet: refused
        sign_in(page, server.url, "dave", PASSWORD)
    assert page.locator("#signin-form").is_visible()
    r = requests.patch(f"{server.url}/admin/users/dave", json={"enabled": True},
                       headers={"Authorization": f"Bearer {server.root_token}"})
    assert r.status_code == 200
    sign_in(page, server.url, "dave", PASSWORD)
    assert page.url == f"{server.url}/web/"


def test_registration_off_and_a_reset_link(site):
    server, context = site("off")
    _, token = UserAdmin(server.services.users).add("erin")
    page = context.new_page()
    with context.watch.allowing(r"status of 403"):  # the page says why, with a 403
        page.goto(f"{server.url}/web/register")
    assert "off" in page.locator("#register-message").inner_text()
    assert page.locator("#register-form").count() == 0
    link = requests.post(f"{server.url}/admin/users/erin/reset",
                         headers={"Authorization": f"Bearer {server.root_token}"}).json()["url"]
    page.goto(link)
    assert page.locator("#reset-name").input_value() == "erin"
    page.fill("#reset-password", PASSWORD)
    page.fill("#reset-password2", PASSWORD)
    page.click("#reset-form button[type=submit]")
    page.wait_for_url(f"{server.url}/web/profile")
    page.wait_for_selector("#account-password")
    assert page.locator("#account-password").inner_text() == "set"
    sign_out(page)
    sign_in(page, server.url, "erin", PASSWORD)
    assert page.url == f"{server.url}/web/"
    sign_out(page)
    sign_in(page, server.url, "erin", token)  # the token still signs in too
    assert page.url == f"{server.url}/web/"


def test_an_admin_sees_and_revokes_a_users_service_tokens_and_makes_a_reset_link(site):
    server, context = site("off")
    _, token = UserAdmin(server.services.users).add("fred")
    made = requests.post(f"{server.url}/account/tokens", json={"name": "pipeline", "scope": "submit", "days": 30},
                         headers={"Authorization": f"Bearer {token}"})
    assert made.status_code in (200, 201), made.text
    service = {"Authorization": f"Bearer {made.json()['token']}"}
    assert requests.get(f"{server.url}/rest/dummy", headers=service).status_code == 200
    page = context.new_page()
    sign_in(page, server.url, "root", server.root_token)
    page.goto(f"{server.url}/web/admin")
    page.click("tr[data-user='fred'] .user-access")
    row = page.locator("tr[data-access-of='fred']")
    row.locator("li[data-token]").wait_for()
    assert "pipeline" in row.inner_text() and "submit" in row.inner_text()
    row.locator("button[aria-label='Revoke the token pipeline of fred']").click()
    row.locator("text=No service token.").wait_for()
    assert requests.get(f"{server.url}/rest/dummy", headers=service).status_code == 401
    row.locator("text=Password reset link").click()
    link = row.locator(".reset-link code").inner_text()
    assert link.startswith(f"{server.url}/web/reset?name=fred&code=")
    page.goto(link)
    assert page.locator("#reset-name").input_value() == "fred"
    page.goto(f"{server.url}/web/admin")  # the row closes with the page, and opens again on demand
    assert page.locator("tr[data-access-of='fred']").count() == 0
