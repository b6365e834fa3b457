"""Bytes that are not UTF-8 in a query string or a header: a 400 that says so, never a 500.

Found by hand in session 18: ``GET /rest/dummy?PHASE=%ff`` was a 500 (bottle's UnicodeDecodeError),
and so were WAIT, RUNID, provsap's ID, any query of a job; ``Idempotency-Key: \\xff`` on a creation,
and ``Sec-Fetch-Dest: \\xff`` on any 401 (the error handler itself failed).  Routes that read the
query with bottle's ``request.query.get`` took UTF-8 as Latin-1 instead (``?format=é`` came back as
``'Ã©'``).  Every route now reads the query through ``opus.server.web.query_items``.

Real HTTP (the in-process server on a socket), every route of the application.
"""

from __future__ import annotations

import re

import pytest
import requests

from conftest import signed_in_sessions

BAD_QUERY = ("x=%ff&%fe=1&PHASE=%ff&WAIT=%ff&LAST=%ff&AFTER=%ff&RUNID=%ff&ID=%ff&format=%ff&next=%ff"
             "&name=%ff&digest=%ff&version=%ff&check=%ff&from=%ff&code=%ff&state=%ff&error=%ff")
NOT_UTF8 = "the query string is not UTF-8"


def _filled(rule: str, job_id: str) -> str:
    """The route's rule with a plausible value for each of its wildcards."""
    def value(match: re.Match) -> str:
        name = match.group(1).split(":")[0]
        if name == "name":
            if rule.startswith("/rest/"):
                return "text"
            return "dummy" if rule.startswith("/jdl") else "alice"
        return {"jobname": "dummy", "job_id": job_id, "result_id": "stdout", "entity_id": "0" * 16,
                "file_name": "x.txt", "link_id": "0" * 32, "token": "0" * 32 + "." + "0" * 32,
                "token_id": "0123456789abcdef", "path": "x", "kind": "json"}[name]
    return re.sub(r"<([^>]+)>", value, rule)


def test_no_route_answers_an_undecodable_query_with_a_500(live):
    sessions = signed_in_sessions(live)
    job_id = live.create("dummy").rsplit("/", 1)[1]
    answers = []
    for route in list(live.app.routes):
        path = _filled(route.rule, job_id)
        for who in ("anonymous", "root"):
            r = sessions[who].request(route.method, f"{live.url}{path}?{BAD_QUERY}", allow_redirects=False,
                                      timeout=30)
            answers.append((route.method, path, who, r.status_code, r.text[:200]))
    failures = [a for a in answers if a[3] >= 500]
    assert not failures, "\n".join(map(str, failures))
    assert len(answers) > 200


@pytest.mark.parametrize("method, path", [
    ("GET", "/rest/dummy"), ("POST", "/rest/dummy"), ("GET", "/rest/dummy/{job}"),
    ("GET", "/provsap"), ("GET", "/store"), ("GET", "/jdl/dummy"), ("GET", "/jdl"),
])
def test_a_route_that_reads_the_query_says_it_is_not_utf8(live, method, path):
    job_url = live.create("dummy")
    url = f"{live.url}{path.format(job=job_url.rsplit('/', 1)[1])}?PHASE=%ff&ID=%ff&format=%ff"
    r = requests.request(method, url, data={"text": "x"} if method == "POST" else None, allow_redirects=False,
                         timeout=30)
    assert r.status_code == 400, r.text
    assert NOT_UTF8 in r.text


def test_utf8_in_the_query_is_read_as_utf8(live):
    """Values echoed in errors and filters: 'é' stays 'é' (it came back as 'Ã©')."""
    r = requests.get(f"{live.url}/store", params={"ID": "é"}, timeout=30)
    assert r.status_code == 400 and "'é'" in r.text, r.text
    r = requests.get(f"{live.url}/jdl/dummy", params={"format": "é"}, timeout=30)
    assert r.status_code == 400 and "'é'" in r.text, r.text
    job_url = live.create("dummy", data={"text": "x", "RUNID": "été"})
    listed = requests.get(f"{live.url}/rest/dummy", params={"RUNID": "été"}, headers={"Accept": "application/json"},
                          timeout=30).json()
    assert [j["jobId"] for j in listed["jobs"]] == [job_url.rsplit("/", 1)[1]]


def test_a_header_that_is_not_utf8_is_not_a_500(live):
    # Idempotency-Key: printable ASCII only, so the byte is a 400 naming the header.
    r = requests.post(f"{live.url}/rest/dummy", data={"text": "x"}, headers={"Idempotency-Key": b"\xff\xfe"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "Idempotency-Key" in r.text, r.text
    # The 401 of an admin route, asked by what claims to be a page's fetch() with bytes in its headers.
    for name in ("Sec-Fetch-Dest", "Sec-Fetch-Mode"):
        r = requests.get(f"{live.url}/metrics", headers={name: b"\xff", "Sec-Fetch-Dest": b"empty"}
                         if name == "Sec-Fetch-Mode" else {name: b"\xff"}, timeout=30)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Basic"), r.headers


def test_a_multipart_part_whose_headers_are_not_utf8_is_a_400_in_words(live):
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nx\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"infile\"; filename=\"\xff\xfe.fits\"\r\n\r\n"
            b"data\r\n--XyZ--\r\n")
    r = requests.post(f"{live.url}/rest/copy", data=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
                      allow_redirects=False, timeout=30)
    assert r.status_code == 400, r.text
    assert r.text.strip() == "malformed multipart body: a part's headers or a field's value are not UTF-8"
