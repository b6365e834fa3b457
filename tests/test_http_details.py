"""HTTP details that standard UWS clients trip on (issue 13, points 9, 10, 11, 13 and 15), each
driven through HTTP against the in-process app.

9.  Instants outside the representable range, or with an impossible zone offset, are a 400 naming
    the parameter (AFTER, DESTRUCTION at creation and at /destruction, a dateTime parameter).
10. ``Accept`` is negotiated with q-values, and every negotiated response says ``Vary: Accept``;
    ``/`` answers HTML to a browser.
11. ``Authorization: Basic Og==`` (empty name and token) is anonymous where anonymous access is allowed.
13. Undeclared parameters are refused (400), or dropped with IGNORE_UNKNOWN_PARAMETERS.
15. A DESTRUCTION later than the allowed maximum is shortened to it (the README says so).
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
from conftest import ApiServer, make_settings

from opus.auth import users as users_module
from opus.settings import REPO_ROOT
from opus.timeutil import format_instant, parse_instant

UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"
TOO_EARLY = "0001-01-01T00:00:00+01:00"
TOO_LATE = "9999-12-31T23:59:59-01:00"
BAD_OFFSETS = ("2030-01-01T00:00:00+25:00", "2030-01-01T00:00:00+01:99", "2030-01-01T00:00:00-14:30")
OUT_OF_RANGE = (TOO_EARLY, TOO_LATE, *BAD_OFFSETS)


def vary(r) -> list[str]:
    return [v.strip().lower() for v in r.headers.get("Vary", "").split(",") if v.strip()]


def assert_400_naming(r, name: str) -> None:
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert name in r.text, r.text


# ---- 9: instants ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_after_out_of_range_or_bad_offset_is_400(api, value):
    r = api.http.get(f"{api.url}/rest/dummy?AFTER={quote(value)}")
    assert_400_naming(r, "AFTER")


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_destruction_out_of_range_or_bad_offset_is_400_at_creation_and_after(api, value):
    r = api.http.post(f"{api.url}/rest/dummy", data={"DESTRUCTION": value}, allow_redirects=False)
    assert_400_naming(r, "DESTRUCTION")
    job = api.create()
    before = api.http.get(job + "/destruction").text
    r = api.http.post(job + "/destruction", data={"DESTRUCTION": value}, allow_redirects=False)
    assert_400_naming(r, "DESTRUCTION")
    assert api.http.get(job + "/destruction").text == before


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_datetime_parameter_out_of_range_or_bad_offset_is_400(api, value):
    r = api.http.post(f"{api.url}/rest/types", data={"p_dateTime": value}, allow_redirects=False)
    assert_400_naming(r, "p_dateTime")
    job = api.create("types")
    r = api.http.post(job + "/parameters", data={"p_dateTime": value}, allow_redirects=False)
    assert_400_naming(r, "p_dateTime")


def test_instants_at_the_edges_of_the_range_are_accepted_and_just_beyond_refused(api):
    r = api.http.get(f"{api.url}/rest/dummy", params={"AFTER": "2030-01-01T00:00:00+14:01"})
    assert_400_naming(r, "AFTER")
    r = api.http.get(f"{api.url}/rest/dummy", params={"AFTER": "0001-01-01T00:00:00Z"})
    assert r.status_code == 200, r.text
    r = api.http.get(f"{api.url}/rest/dummy", params={"AFTER": "0001-01-01T00:00:00-01:00", "LAST": "3"})
    assert r.status_code == 200, r.text
    for value in ("9999-12-31T23:59:59.999999Z", "2030-01-01T14:00:00+14:00", "2030-01-01T00:00:00-1400"):
        job = api.create("types", {"p_dateTime": value, "DESTRUCTION": value})
        assert api.http.get(job).status_code == 200


# ---- 15: a late DESTRUCTION is shortened to the maximum ------------------------------------------------
def test_destruction_beyond_the_maximum_is_shortened_to_it(api):
    job = api.create(data={"DESTRUCTION": "9999-12-31T23:59:59Z"})
    created = parse_instant(re.search(r"<uws:creationTime>([^<]+)<", api.http.get(job).text).group(1))
    maximum = created + timedelta(seconds=api.settings.MAX_DESTRUCTION_INTERVAL)
    assert api.http.get(job + "/destruction").text == format_instant(maximum)
    later = {"DESTRUCTION": "9000-01-01T00:00:00Z"}
    r = api.http.post(job + "/destruction", data=later, allow_redirects=False)
    assert r.status_code == 303
    assert api.http.get(job + "/destruction").text == format_instant(maximum)
    readme = (REPO_ROOT / "README.md").read_text()
    assert "MAX_DESTRUCTION_INTERVAL" in readme.split("## The REST interface")[1].split("\n## ")[0]


# ---- 10: content negotiation ---------------------------------------------------------------------------
@pytest.mark.parametrize("accept,expected", [
    ("application/json;q=0, application/xml", "text/xml"),
    ("application/json; q=0, */*", "text/xml"),
    ("*/*", "text/xml"),
    ("application/*", "text/xml"),
    ("text/*, application/json;q=0.5", "text/xml"),
    ("text/html", "text/xml"),  # nothing acceptable: UWS answers XML (no 406)
    ("application/json", "application/json"),
    ("application/json, */*;q=0.1", "application/json"),
    ("application/xml;q=0.4, application/json;q=0.5", "application/json"),
    ("text/xml;q=0.2, application/*;q=0.9", "text/xml"),  # application/xml is XML too
    ("APPLICATION/JSON;Q=1", "application/json"),
    ("application/json;q=abc, text/xml", "text/xml"),  # a malformed range is skipped
    ("application/json;q=1.5", "text/xml"),
    (",;,garbage/, /", "text/xml"),
    ("", "text/xml"),
])
def test_job_is_negotiated_with_q_values_and_varies_on_accept(api, accept, expected):
    job = api.create()
    for url in (job, job + "/parameters", job + "/results", f"{api.url}/rest/dummy",
                f"{api.url}/rest/dummy?LAST=5"):
        r = api.http.get(url, headers={"Accept": accept})
        assert r.status_code == 200, (url, r.text)
        assert r.headers["Content-Type"].startswith(expected), (url, accept, r.headers["Content-Type"])
        assert "accept" in vary(r), (url, r.headers)


def test_negotiated_errors_vary_on_accept_and_honour_q_zero_and_others_do_not_vary(api):
    url = f"{api.url}/rest/dummy/0123456789abcdef"
    r = api.http.get(url, headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.json()["status"] == 404
    assert "accept" in vary(r)
    r = api.http.get(url, headers={"Accept": "application/json;q=0, text/plain"})
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/plain")
    assert "accept" in vary(r)
    r = api.http.get(f"{api.url}/rest/dummy?LAST=0", headers={"Accept": "application/json;q=0.1, */*"})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/plain")
    # What is not negotiated does not claim to vary.
    job = api.create()
    r = api.http.get(job + "/phase", headers={"Accept": "application/json"})
    assert r.text == "PENDING" and "accept" not in vary(r)


@pytest.mark.parametrize("accept,expected", [
    ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", "text/html"),
    ("text/html", "text/html"),
    (None, "text/plain"),
    ("*/*", "text/plain"),
    ("text/*", "text/plain"),
    ("application/json", "application/json"),
    ("application/xml", "text/plain"),
])
def test_index_answers_html_to_a_browser_and_text_to_others(api, accept, expected):
    r = api.http.get(api.url + "/", headers={"Accept": accept} if accept else {"Accept": None})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith(expected)
    assert "accept" in vary(r)
    if expected == "text/html":
        assert r.headers["X-Content-Type-Options"] == "nosniff" and "Content-Security-Policy" in r.headers
        assert f'href="{api.url}/rest/dummy"' in r.text and f'href="{api.url}/web/"' in r.text
    elif expected == "text/plain":
        assert f"{api.url}/rest/dummy" in r.text


def test_vary_keeps_origin_and_adds_accept_with_cors(tmp_path):
    server = ApiServer(make_settings(tmp_path, CORS_ORIGINS=("https://compose.example.org",)))
    try:
        for origin in ("https://compose.example.org", "https://other.example.org"):
            headers = {"Origin": origin, "Accept": "application/json"}
            r = server.http.get(f"{server.url}/rest/dummy", headers=headers)
            assert r.status_code == 200 and set(vary(r)) == {"origin", "accept"}, r.headers
    finally:
        server.stop()


# ---- 11: empty Basic credentials ----------------------------------------------------------------------
EMPTY_BASIC = {"Authorization": "Basic Og=="}


@pytest.fixture
def hashes(monkeypatch):
    """The keyed token hashes computed (one per presented credential)."""
    calls = []
    real = users_module.keyed_token_hash

    def counting(key, token):
        calls.append(token)
        return real(key, token)

    monkeypatch.setattr(users_module, "keyed_token_hash", counting)
    return calls


def test_empty_basic_credentials_are_anonymous_where_allowed_else_401(api, hashes, tmp_path):
    r = api.http.get(f"{api.url}/rest/dummy", headers=EMPTY_BASIC)
    assert r.status_code == 200, r.text
    r = api.http.post(f"{api.url}/rest/dummy", data={"text": "hi"}, headers=EMPTY_BASIC,
                      allow_redirects=False)
    assert r.status_code == 303, r.text
    job = r.headers["Location"]
    assert api.http.get(job + "/owner", headers=EMPTY_BASIC).text == ""
    assert hashes == []
    # Credentials that are not both empty are still checked, and wrong.
    r = api.http.get(f"{api.url}/rest/dummy", headers={"Authorization": "Basic OmFi"})  # ":ab"
    assert r.status_code == 401 and hashes
    server = ApiServer(make_settings(tmp_path / "closed", ALLOW_ANONYMOUS=False))
    try:
        r = server.http.get(f"{server.url}/rest/dummy", headers=EMPTY_BASIC)
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    finally:
        server.stop()


# ---- 13: undeclared parameters --------------------------------------------------------------------------
def test_undeclared_parameters_are_refused_or_dropped_as_the_readme_says(api, tmp_path):
    r = api.http.post(f"{api.url}/rest/dummy", data={"text": "hi", "MAXREC": "10"}, allow_redirects=False)
    assert_400_naming(r, "MAXREC")
    server = ApiServer(make_settings(tmp_path / "ignore", IGNORE_UNKNOWN_PARAMETERS=True))
    try:
        job = server.create(data={"text": "hi", "MAXREC": "10"})
        assert "MAXREC" not in server.http.get(job + "/parameters").text.upper()
    finally:
        server.stop()
    rest = (REPO_ROOT / "README.md").read_text().split("## The REST interface")[1].split("\n## ")[0]
    assert "IGNORE_UNKNOWN_PARAMETERS" in rest and "are kept" not in rest
