"""Job scripts written for the original OPUS behave as they did there (issue 16, points 1-6).

Each test runs a script written the original's way through HTTP and the real local manager (the job
wrapper in its sandbox).  The original's own example definition (tests/data/original/, see its
README) is the first of them: its script has CRLF line endings and writes ``$output``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import LiveServer, make_settings
from opus.jobdef.formats import write_definition
from opus.jobdef.importing import import_definition

DATA = Path(__file__).parent / "data" / "original"
#: PROV-JSON of a job's own steps, in the file the original read (internal_provenance.json).
STEPS = {"prefix": {"ex": "http://example.org/steps#"},
         "activity": {"ex:calibrate": {"prov:label": "calibrate"}},
         "entity": {"ex:calibrated": {"prov:label": "calibrated events"}},
         "wasGeneratedBy": {"_:g1": {"prov:entity": "ex:calibrated", "prov:activity": "ex:calibrate"}}}


def original_vot() -> bytes:
    """The original's test_activity_1 (``sleep 10\\r\\necho $text > $output\\r\\n``), without the wait."""
    data = (DATA / "votable" / "test_activity_1_vot.xml").read_bytes()
    assert b"sleep 10&#13;&#10;echo $text &gt; $output&#13;&#10;" in data
    return data.replace(b"sleep 10&#13;", b"sleep 0&#13;")


def original_json(name: str, script: str) -> bytes:
    """The original's JSON file of test_activity_1, renamed, with another script (CRLF line endings)."""
    content = json.loads((DATA / "json" / "test_activity_1.json").read_text())
    return json.dumps({**content, "name": name, "script": script.replace("\n", "\r\n")}).encode()


def ours(name: str, script: str, **fields) -> dict:
    return {"name": name, "script": script, "generated": {"out": {"file": "out.txt"}}, **fields}


def start(tmp_path: Path, definitions: dict[str, bytes | dict], **overrides) -> LiveServer:
    """A live server whose JDL_DIR holds ``definitions``: ours as they are, the original's imported."""
    settings = make_settings(tmp_path, **overrides)
    for name, doc in definitions.items():
        if isinstance(doc, bytes):
            doc = json.loads(write_definition(import_definition(doc).definition, "json"))
        (Path(settings.JDL_DIR) / f"{name}.json").write_text(json.dumps(doc))
    return LiveServer(settings)


@pytest.fixture
def servers():
    started: list[LiveServer] = []
    yield started
    for server in started:
        server.stop()


def run(server: LiveServer, jobname: str, data: dict | None = None) -> tuple[str, dict]:
    url = server.create(jobname, data, run=True)
    phase = server.wait_final(url, 60)
    return phase, server.http.get(url, headers={"Accept": "application/json"}).json() | {"url": url}


def result(server: LiveServer, job: dict, result_id: str) -> str:
    r = server.http.get(f"{job['url']}/results/{result_id}")
    assert r.status_code == 200, r.text
    return r.text


def error_of(server: LiveServer, job: dict) -> str:
    return server.http.get(f"{job['url']}/error").text


def test_the_originals_crlf_script_runs_and_writes_its_result_variable(tmp_path, servers):
    """Points 1 and 3: the original's example definition, as its files hold it, runs as it did there."""
    servers.append(server := start(tmp_path, {"test_activity_1": original_vot(),
                                              "crlf": ours("crlf", "sleep 0\r\necho ok > out.txt\r\n")}))
    phase, job = run(server, "test_activity_1", {"text": "hello there"})
    assert phase == "COMPLETED", error_of(server, job)
    assert result(server, job, "output") == "hello there\n"
    phase, job = run(server, "crlf")  # a definition of ours saved with CRLF (a browser's textarea) too
    assert phase == "COMPLETED", error_of(server, job)
    assert result(server, job, "out") == "ok\n"


SCRIPT_FAILING_MIDWAY = "echo one > out.txt\nls /nonexistent-input\necho two >> out.txt\n"


def test_a_failing_command_midway_ends_the_job_in_error_when_the_definition_asks(tmp_path, servers):
    """Point 2: ``errexit`` (default for definitions imported from the original's files)."""
    servers.append(server := start(tmp_path, {
        "strict": ours("strict", SCRIPT_FAILING_MIDWAY, errexit=True),
        "lenient": ours("lenient", SCRIPT_FAILING_MIDWAY),
        "imported": original_json("imported", "echo $text > $output\nfalse\necho never >> $output\n"),
        "inner": ours("inner", "step() { false; echo after > out.txt; }\nstep\n", errexit=True)}))
    phase, job = run(server, "strict")
    assert phase == "ERROR"
    assert "line 2 failed (exit status 2): ls /nonexistent-input" in error_of(server, job)
    assert result(server, job, "out") == "one\n"  # what it wrote before is kept, as the original did
    phase, job = run(server, "lenient")
    assert phase == "COMPLETED"
    assert result(server, job, "out") == "one\ntwo\n"
    phase, job = run(server, "imported")
    assert phase == "ERROR" and "line 2 failed (exit status 1): false" in error_of(server, job)
    phase, job = run(server, "inner")  # inside a function too
    assert phase == "ERROR" and "line 1 failed (exit status 1): false" in error_of(server, job)


def test_the_variables_the_original_exported(tmp_path, servers):
    """Point 3: $JOBID, $jd, $wd, $rs and the result names, with their documented OPUS_ names."""
    script = ('for v in JOBID OPUS_JOB_ID jd OPUS_JOB_DIR wd OPUS_WORK_DIR rs OPUS_RESULTS_DIR output '
              'OPUS_RESULT_output OPUS_RESULT_log log; do echo "$v=${!v-unset}"; done > $output\n'
              'echo "PWD=$PWD" >> $output\necho logged > $log\n')
    content = json.loads(original_json("variables", script))
    content["generated"]["log"] = {"default": "run.log", "content_type": "text/plain"}
    content["parameters"]["log"] = {"datatype": "xs:string", "default": "mine.log", "required": "false"}
    servers.append(server := start(tmp_path, {"variables": json.dumps(content).encode()}))
    phase, job = run(server, "variables", {"text": "x"})
    assert phase == "ERROR"  # the parameter 'log' took the result's name: the result's file is missing
    values = dict(line.split("=", 1) for line in result(server, job, "output").splitlines())
    root = str(server.settings.jobs_dir / job["jobId"])
    assert values["JOBID"] == values["OPUS_JOB_ID"] == job["jobId"]
    assert values["jd"] == values["OPUS_JOB_DIR"] == root
    assert values["wd"] == values["OPUS_WORK_DIR"] == values["PWD"] == f"{root}/work"
    assert values["rs"] == values["OPUS_RESULTS_DIR"] == f"{root}/results"
    assert values["output"] == values["OPUS_RESULT_output"] == "output.txt"
    assert values["OPUS_RESULT_log"] == "run.log" and values["log"] == "mine.log"  # a parameter wins


def test_a_login_shell_reads_the_sites_profile(tmp_path, servers):
    """Point 4: ``"shell": "login"`` (default for the original's definitions, or the site's JOB_SHELL)."""
    script = "shopt -q login_shell && echo login > out.txt\necho \"PATH=$PATH\" >> out.txt\n"
    servers.append(server := start(tmp_path, {"login": ours("login", script, shell="login"),
                                              "plain": ours("plain", script, shell="plain"),
                                              "site": ours("site", script)}, JOB_SHELL="login"))
    profile_path = login_path()
    login = f"login\nPATH={profile_path}\n"
    for jobname, expected in (("login", login), ("site", login), ("plain", "PATH=/usr/local/bin:/usr/bin:/bin\n")):
        phase, job = run(server, jobname)
        assert phase == "COMPLETED", error_of(server, job)
        assert result(server, job, "out") == expected, jobname


def login_path() -> str:
    """The PATH /etc/profile gives the job user (not root) on this host."""
    import pwd
    import subprocess
    user = pwd.getpwnam("opus-job")
    out = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                          "env", "-i", "/bin/bash", "-l", "-c", 'echo "$PATH"'],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_internal_provenance_json_is_read_as_provenance_json(tmp_path, servers):
    """Point 5: the original's file name for a job's own steps."""
    script = f"echo $text > $output\ncat > internal_provenance.json <<'EOF'\n{json.dumps(STEPS)}\nEOF\n"
    servers.append(server := start(tmp_path, {"steps": original_json("steps", script)}))
    phase, job = run(server, "steps", {"text": "x"})
    assert phase == "COMPLETED", error_of(server, job)
    prov = server.http.get(f"{job['url']}/provenance", params={"format": "json"}).json()
    assert "ex:calibrate" in prov["activity"] and "ex:calibrated" in prov["entity"]


class _Archive(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"served {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def archive():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_an_inputs_default_is_resolved_as_a_clients_value(tmp_path, servers, archive):
    """Point 6: a default identifier goes through the ``$ID`` template, a default URL is fetched."""
    used = {"events": {"url": f"{archive}/data/$ID", "default": "obs42"},
            "calib": {"default": f"{archive}/files/calib.txt"},
            "note": {"default": "plain-words", "required": False}}
    script = 'cat "$events" "$calib" > out.txt\necho "note=$note" >> out.txt\n'
    servers.append(server := start(tmp_path, {"fetching": ours("fetching", script, used=used)}))
    phase, job = run(server, "fetching")
    assert phase == "COMPLETED", error_of(server, job)
    assert result(server, job, "out") == "served /data/obs42\nserved /files/calib.txt\nnote=plain-words\n"
    phase, job = run(server, "fetching", {"events": "obs7"})  # a client's value, as before
    assert phase == "COMPLETED", error_of(server, job)
    assert result(server, job, "out").startswith("served /data/obs7\n")
