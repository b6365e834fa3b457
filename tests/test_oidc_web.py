"""Single sign-on in the browser (issue 17 point 2): Debian's Chromium, driven by Playwright, signs in
through the test OpenID provider (tests/test_oidc.py's ``Provider``, oidc-provider-mock on 127.0.0.1):
the sign-in page's button, the provider's own form, back to the page asked for, signed in; the user
is created with its groups and roles, and only the editor-group user may propose a job definition.
"""

from __future__ import annotations

import re

import pytest
from browser import HOME_READY, browser, watched_context  # noqa: F401  (browser: a fixture)
from conftest import LiveServer
from test_oidc import NAME, oidc_settings, provider  # noqa: F401  (provider: a fixture)

pytestmark = pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")
#: The provider mock's page loads its stylesheet from a CDN: blocked (no network), and not OPUS's.
PROVIDER_STYLE = "https://cdn.jsdelivr.net/npm/@picocss/"
DEFINITION = {"name": "ssoproposal", "version": "1", "script": "echo hi > out.txt",
              "generated": {"out": {"file": "out.txt", "content_type": "text/plain"}}}


def sign_in_through_provider(context, url: str, sub: str) -> object:
    """From a page that needs a session to the provider's form and back: the page, signed in."""
    page = context.new_page()
    page.goto(f"{url}/web/signin?next=/web/jobs")
    with context.watch.allowing("Failed to load resource"):  # the provider page's blocked stylesheet
        page.click(f"text=Sign in with {NAME}")
        page.get_by_placeholder("sub").fill(sub)
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(f"{url}/web/jobs")
    return page


def propose(page, url: str) -> int:
    """POST /jdl from the signed-in page's context, with the session's CSRF token, as the editor does."""
    csrf = page.request.get(f"{url}/web/session").json()["csrfToken"]
    return page.request.post(f"{url}/jdl", data=DEFINITION, headers={"X-CSRF-Token": csrf}).status


def test_sign_in_through_the_provider_then_only_editors_propose(tmp_path, browser, provider):  # noqa: F811
    server = LiveServer(oidc_settings(tmp_path, provider))
    provider.user("sub-erin", preferred_username="erin", groups=["editors", "astro"], name="Erin")
    provider.user("sub-paul", preferred_username="paul", groups=["astro"])
    try:
        editor = watched_context(browser, server.url, provider.url)
        page = sign_in_through_provider(editor, server.url, "sub-erin")
        assert re.match(r"erin\b", page.locator("#opus-user").inner_text())
        erin = server.services.users.get("erin")
        assert erin is not None and erin.is_editor and not erin.is_admin and set(erin.groups) == {"editors", "astro"}
        assert propose(page, server.url) == 201
        # The profile shows the account and its token's id, never a token (until the user replaces it).
        page.goto(f"{server.url}/web/profile")
        page.wait_for_selector("#account-name")
        assert page.locator("#account-name").inner_text() == "erin"
        assert page.locator("#token-id").inner_text().startswith(erin.token_id)
        assert page.locator("#shown-token").count() == 0 or not page.locator("#shown-token").first.inner_text()

        plain = watched_context(browser, server.url, provider.url)
        other = sign_in_through_provider(plain, server.url, "sub-paul")
        assert re.match(r"paul\b", other.locator("#opus-user").inner_text())
        paul = server.services.users.get("paul")
        assert paul is not None and not paul.is_editor
        assert propose(other, server.url) == 403
        for context in (editor, plain):
            context.close()
            context.watch.outside[:] = [u for u in context.watch.outside if not u.startswith(PROVIDER_STYLE)]
            context.watch.check()
    finally:
        server.stop()
