"""Parameter validation and inputs (uploads, URLs, identifiers) through the REST API, in real jobs."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import REPO_ROOT, LiveServer, make_settings

EXTRA = {
    "multi": {
        "name": "multi", "version": "1", "script": "printf '%s' \"$ids\" > ids.txt\n",
        "parameters": {
            "ids": {"type": "int", "multiplicity": "1..3", "required": True, "min": 0, "max": 99999},
            "colour": {"type": "string", "options": ["red", "blue"], "default": "red"},
            "scale": {"type": "double", "min": 0.5, "max": 2, "unit": "deg", "default": "1"},
            "when": {"type": "dateTime"},
            "flag": {"type": "boolean"},
        },
        "generated": {"ids": {"file": "ids.txt", "content_type": "text/plain"}},
    },
    "fetchit": {
        "name": "fetchit", "version": "1",
        "script": "for f in $data; do cat \"$f\"; done > all.dat\nsha256sum $data | cut -c1-64 > sums.txt\n",
        "used": {"data": {"content_type": "application/octet-stream", "multiplicity": "*"}},
        "generated": {"all": {"file": "all.dat"}, "sums": {"file": "sums.txt", "content_type": "text/plain"}},
    },
    "byid": {
        "name": "byid", "version": "1", "script": "cp \"$obs\" obs.dat\n",
        "used": {"obs": {"url": "http://127.0.0.1:$PORT/obs?id=$ID"}},
        "generated": {"obs": {"file": "obs.dat"}},
    },
    "missing": {
        "name": "missing", "version": "1", "script": "echo partial > a.txt\n",
        "generated": {"a": {"file": "a.txt", "role": "log", "obscore": {"dataproduct_type": "text",
                                                                       "calib_level": 0}},
                      "b": {"file": "b.txt", "description": "never written"},
                      "extras": {"file": "*.png", "required": True}},
    },
}


class _Files(BaseHTTPRequestHandler):
    """A small data server: /file/<n> serves n bytes, /obs?id=X serves "obs X", /redirect to elsewhere."""

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/file/"):
            body = bytes(range(256)) * (int(self.path.rsplit("/", 1)[1]) // 256)
        elif self.path.startswith("/obs?id="):
            body = f"obs {self.path.split('=', 1)[1]}".encode()
        elif self.path == "/redirect-out":
            self.send_response(302)
            self.send_header("Location", "http://localhost.invalid/x")
            self.end_headers()
            return
        elif self.path == "/redirect-in":
            self.send_response(302)
            self.send_header("Location", "/file/512")
            self.end_headers()
            return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def files_server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", httpd.server_port
    httpd.shutdown()
    httpd.server_close()


def _jdl_dir(tmp_path: Path, port: int) -> Path:
    jdl = tmp_path / "jdl"
    shutil.copytree(REPO_ROOT / "jdl", jdl)
    for name, data in EXTRA.items():
        text = json.dumps(data).replace("$PORT", str(port))
        (jdl / f"{name}.json").write_text(text)
    return jdl


@pytest.fixture
def server(tmp_path, files_server):
    _url, port = files_server
    s = LiveServer(make_settings(tmp_path, JDL_DIR=str(_jdl_dir(tmp_path, port)),
                                 INPUT_URL_HOSTS=("127.0.0.1",), INPUT_URL_MAX_SIZE=4096))
    yield s
    s.stop()


def _post(server, jobname, data, files=None):
    return server.http.post(f"{server.url}/rest/{jobname}", data=data, files=files, allow_redirects=False)


# ---- validation rules -------------------------------------------------------------------------------
@pytest.mark.parametrize("data, message", [
    ({"ids": "12 x"}, "parameter 'ids': 'x' is not an integer"),
    ({"ids": "1 2 3 4"}, "parameter 'ids': 4 value(s) given; it takes between 1 and 3 values"),
    ({"ids": "100000"}, "parameter 'ids': 100000 is above the maximum 99999"),
    ({"ids": "1", "colour": "mauve"}, "parameter 'colour': 'mauve' is not one of the allowed values 'red', 'blue'"),
    ({"ids": "1", "scale": "0.1"}, "parameter 'scale': 0.1 is below the minimum 0.5"),
    ({"ids": "1", "scale": "big"}, "parameter 'scale': 'big' is not a number"),
    ({"ids": "1", "when": "yesterday"}, "when"),
    ({"ids": "1", "flag": "maybe"}, "parameter 'flag': 'maybe' is not a boolean"),
    ({"ids": "1", "colour": ["red", "blue"]}, "parameter 'colour' given more than once (it takes one value)"),
    ({"ids": "1", "shade": "dark"}, "parameter 'shade': job definition 'multi' has no such parameter; "
                                    "its parameters are colour, flag, ids, scale, when"),
])
def test_each_rule_is_a_400_naming_the_parameter(server, data, message):
    r = _post(server, "multi", data)
    assert r.status_code == 400, r.text
    assert message in r.text
    assert server.http.get(f"{server.url}/rest/multi").text.count("<uws:jobref") == 0  # nothing half-created


def test_required_parameter_missing_at_run(server):
    r = _post(server, "multi", {"PHASE": "RUN"})
    assert r.status_code == 400
    assert "required parameter(s) missing: ids" in r.text


def test_defaults_filled_in_and_multiple_values_joined(server):
    url = server.create("multi", {"ids": ["7", "8"], "IDS": "9"}, run=True)
    assert server.wait_final(url) == "COMPLETED"
    params = {p["id"]: p["value"] for p in server.http.get(url, headers={"Accept": "application/json"})
              .json()["parameters"]}
    assert params == {"ids": "7 8 9", "colour": "red", "scale": "1"}
    assert server.http.get(url + "/results/ids").text == "7 8 9"
    seen = json.loads((Path(server.settings.jobs_dir) / url.rsplit("/", 1)[1] / "parameters.json").read_text())
    assert seen["ids"] == ["7", "8", "9"]


def test_updates_are_checked_too(server):
    url = server.create("multi", {"ids": "1"})
    r = server.http.post(url + "/parameters", data={"scale": "5"}, allow_redirects=False)
    assert r.status_code == 400 and "parameter 'scale': 5 is above the maximum 2" in r.text
    r = server.http.put(url + "/parameters/colour", data="green", headers={"Content-Type": "text/plain"},
                        allow_redirects=False)
    assert r.status_code == 400 and "'green' is not one of the allowed values" in r.text
    r = server.http.post(url + "/parameters", data={"nope": "1"}, allow_redirects=False)
    assert r.status_code == 400 and "has no such parameter" in r.text


def test_unknown_names_ignored_when_the_setting_says_so(tmp_path, files_server):
    s = LiveServer(make_settings(tmp_path, JDL_DIR=str(_jdl_dir(tmp_path, files_server[1])),
                                 IGNORE_UNKNOWN_PARAMETERS=True))
    try:
        url = s.create("multi", {"ids": "1", "RESPONSEFORMAT": "votable"})
        params = [p["id"] for p in s.http.get(url, headers={"Accept": "application/json"}).json()["parameters"]]
        assert "RESPONSEFORMAT" not in params and "ids" in params
    finally:
        s.stop()


def test_upload_to_a_non_file_parameter_is_refused(server):
    r = _post(server, "multi", {"ids": "1"}, files={"colour": ("c.txt", b"red")})
    assert r.status_code == 400 and "not a file" in r.text


# ---- inputs ---------------------------------------------------------------------------------------
def test_upload_is_hashed(server):
    content = b"\x00\x01 some bytes" * 1000
    url = server.create("copy", files={"infile": ("in.bin", content)}, run=True)
    assert server.wait_final(url) == "COMPLETED"
    assert server.http.get(url + "/results/copy").content == content
    record = json.loads((Path(server.settings.jobs_dir) / url.rsplit("/", 1)[1] / "inputs.json").read_text())
    assert record["infile"] == {"file_name": "in.bin", "size": len(content),
                                "sha256": hashlib.sha256(content).hexdigest()}


def test_url_inputs_are_fetched_by_the_job(server, files_server):
    base, _port = files_server
    url = server.create("fetchit", {"data": f"{base}/file/1024 {base}/redirect-in"}, run=True)
    assert server.wait_final(url) == "COMPLETED", server.http.get(url).text
    expected = bytes(range(256)) * 4 + bytes(range(256)) * 2
    assert server.http.get(url + "/results/all").content == expected
    sums = server.http.get(url + "/results/sums").text.split()
    assert sums == [hashlib.sha256(bytes(range(256)) * 4).hexdigest(), hashlib.sha256(bytes(range(256)) * 2).hexdigest()]
    fetched = json.loads((Path(server.settings.jobs_dir) / url.rsplit("/", 1)[1] / "fetched.json").read_text())
    assert [f["size"] for f in fetched] == [1024, 512]
    assert fetched[0]["sha256"] == sums[0]
    # the parameter keeps the URLs, by reference
    job = server.http.get(url, headers={"Accept": "application/json"}).json()
    assert job["parameters"][0]["value"].startswith(base)


@pytest.mark.parametrize("value, message", [
    ("http://example.org/data.fits", "host 'example.org' is not one this server fetches from; allowed: 127.0.0.1"),
    ("http://user:pw@127.0.0.1/x", "URLs with a user name or password are refused"),
    ("http://127.0.0.1:99999/x", "is not a valid URL"),
    ("https:///nohost", "names no host"),
])
def test_urls_outside_the_allow_list_are_refused_at_once(server, value, message):
    r = _post(server, "fetchit", {"data": value})
    assert r.status_code == 400, r.text
    assert message in r.text


def test_no_client_urls_by_default(tmp_path, files_server):
    s = LiveServer(make_settings(tmp_path, JDL_DIR=str(_jdl_dir(tmp_path, files_server[1]))))
    try:
        r = _post(s, "fetchit", {"data": f"{files_server[0]}/file/256"})
        assert r.status_code == 400 and "INPUT_URL_HOSTS is empty" in r.text
        # ...but a definition's own template host is allowed
        url = s.create("byid", {"obs": "47802"}, run=True)
        assert s.wait_final(url) == "COMPLETED", s.http.get(url).text
    finally:
        s.stop()


@pytest.mark.parametrize("path, message", [
    ("/file/8192", "more than the limit of 4096"),
    ("/missing", "HTTP 404"),
    ("/redirect-out", "host 'localhost.invalid' is not allowed"),
])
def test_failed_fetch_ends_the_job_in_error_with_the_reason(server, files_server, path, message):
    url = server.create("fetchit", {"data": files_server[0] + path}, run=True)
    assert server.wait_final(url) == "ERROR"
    text = server.http.get(url + "/error").text
    assert "input 'data': cannot fetch" in text and message in text, text
    assert server.http.get(url + "/results/all").status_code == 404


def test_identifier_resolved_through_the_template(server):
    url = server.create("byid", {"obs": "478/02"}, run=True)
    assert server.wait_final(url) == "COMPLETED", server.http.get(url).text
    assert server.http.get(url + "/results/obs").text == "obs 478%2F02"  # URL-encoded into the template


def test_missing_required_results_end_in_error_naming_them(server):
    url = server.create("missing", run=True)
    assert server.wait_final(url) == "ERROR"
    text = server.http.get(url + "/error").text
    assert "b (b.txt)" in text and "extras (*.png)" in text and "a (a.txt)" not in text
    assert server.http.get(url + "/results/a").text == "partial\n"  # what was produced stays readable
    results = server.http.get(url + "/results", headers={"Accept": "application/json"}).json()
    assert [(r["id"], r["role"], r["obscore"]) for r in results] == \
        [("a", "log", {"dataproduct_type": "text", "calib_level": "0"})]
