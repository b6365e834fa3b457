"""The job wrapper: runs one job's script and reports to the server.

Run as ``python -I -S wrapper.py <job dir>/job.json`` by the local manager (and by the SLURM batch
script), so it uses the standard library only and starts fast.  It

* fetches the inputs given as URLs (``jobfetch.py``);
* runs ``bash script.sh`` in the job's work directory, in a process group of its own, inside the
  job sandbox (``jobsandbox.py``: bubblewrap, as the unprivileged job user), with the parameters
  given as environment variables and in ``parameters.json`` -- values are never parsed as shell;
* reports EXECUTING (in the background, so the script is not delayed), then COMPLETED, ERROR or
  ABORTED to ``POST <callback>/handler/job_event`` with the job's HMAC token;
* enforces executionDuration to the second: SIGTERM to the script's process group, SIGKILL after a
  grace period, phase ABORTED with a message saying why;
* on SIGTERM (an ABORT from the server) kills the script's group the same way;
* collects the declared results from the work directory into the result area, with size and
  SHA-256;
* writes its final report to ``report.json`` before sending it, and retries the callback with
  backoff while the server is away, so that no completion is lost.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

# Its siblings travel with it (opus.managers.slurm copies them next to it when the cluster does not
# share DATA_DIR).  mypy reads the first branch: the second imports the same files by path.
if TYPE_CHECKING or __package__:  # imported as opus.managers.wrapper (tests)
    from .jobfetch import fetch
    from .jobsandbox import Sandbox, SandboxError, terminate
else:  # run as a script with -I (no script directory on sys.path): the modules beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from jobfetch import fetch  # noqa: E402
    from jobsandbox import Sandbox, SandboxError, terminate  # noqa: E402

#: A report to the server, or the job's spec: parsed or written JSON.
JSON = dict[str, Any]

# urllib.request/http.client cost ~50 ms of start-up (email, ssl): plain http callbacks use a
# socket directly, https ones import http.client when needed.

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Wrapper:
    def __init__(self, spec_path: str) -> None:
        self.spec_path = Path(spec_path)
        self.spec: JSON = json.loads(self.spec_path.read_text())
        self.root = self.spec_path.parent
        self.work = self.root / "work"
        self.results = self.root / "results"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandbox: Sandbox | None = None
        self.killed_by_signal: int | None = None
        self._sent_executing: threading.Thread | None = None

    # ---- messages ----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        with open(self.root / "wrapper.log", "a", encoding="utf-8") as f:
            f.write(f"{now_iso()} {message}\n")

    def post(self, report: JSON, retry_seconds: float) -> bool:
        """POST one report; retry on connection errors and 5xx with backoff for ``retry_seconds``."""
        url = urlsplit(self.spec["callback_url"].rstrip("/") + "/handler/job_event")
        body = json.dumps({**report, "job_id": self.spec["job_id"], "token": self.spec["token"]}).encode()
        deadline = time.monotonic() + retry_seconds
        delay = 0.2
        while True:
            try:
                status, answer = _http_post(url, body)
                if status < 300:
                    return True
                if status < 500:
                    self.log(f"callback {report['phase']} refused: HTTP {status} {answer[:200]!r}")
                    return False
                error = f"HTTP {status}"
            except OSError as exc:
                error = str(exc) or type(exc).__name__
            if time.monotonic() + delay > deadline:
                self.log(f"callback {report['phase']} failed for good: {error}")
                return False
            self.log(f"callback {report['phase']} failed ({error}); retrying in {delay:.1f} s")
            time.sleep(delay)
            delay = min(delay * 2, 30)

    def finish(self, report: JSON) -> None:
        if self._sent_executing is not None:
            self._sent_executing.join()
        report.setdefault("end_time", now_iso())
        tmp = self.root / "report.json.tmp"
        tmp.write_text(json.dumps(report))
        os.replace(tmp, self.root / "report.json")
        self.post(report, self.spec.get("retry_seconds", 900))

    # ---- the script ----------------------------------------------------------------------------
    def environment(self, sandboxed: bool) -> dict[str, str]:
        env = {
            "PATH": SAFE_PATH, "HOME": str(self.work), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OPUS_JOB_ID": self.spec["job_id"], "OPUS_JOB_NAME": self.spec["jobname"],
            "OPUS_WORK_DIR": str(self.work), "OPUS_RESULTS_DIR": str(self.results),
            "OPUS_PARAMETERS": str(self.root / "parameters.json"),
            # The sandbox has a private /tmp; without it, temporary files stay in the work directory.
            "TMPDIR": "/tmp" if sandboxed else str(self.work),
            # The Python running this wrapper (OPUS's own environment): scripts run Python code with it.
            "OPUS_PYTHON": sys.executable,
        }
        for name, value in self.spec["environment"].items():
            env[name] = value
        return env

    def kill_script(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if self.sandbox is not None and self.sandbox.enabled:
            terminate(self.proc.pid)  # the script, not the outer bwrap (see jobsandbox.terminate)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                return
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # also whatever the script left in its group
        except ProcessLookupError:
            pass
        self.proc.wait()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.killed_by_signal = signum
        threading.Thread(target=self.kill_script, args=(self.spec.get("kill_grace", 2.0),), daemon=True).start()

    def run(self) -> int:
        """Run the job to its end and report it: 0 when it COMPLETED, else 1."""
        self.work.mkdir(exist_ok=True)
        self.results.mkdir(exist_ok=True)
        (self.root / "parameters.json").write_text(json.dumps(self.spec["parameters"], indent=1))
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        start = now_iso()
        self._sent_executing = threading.Thread(
            target=self.post, args=({"phase": "EXECUTING", "start_time": start}, 60), daemon=True)
        self._sent_executing.start()
        if self.spec.get("fetch"):
            failure = self.fetch_inputs()
            if failure:
                self.finish({"phase": "ERROR", "message": failure})
                return 1
            if self.killed_by_signal is not None:
                self.finish({"phase": "ABORTED", "message": "the job was stopped while its inputs were fetched"})
                return 1
        script = self.root / "script.sh"
        try:
            self.sandbox = Sandbox(self.spec.get("sandbox") or {"mode": "bwrap"})
            self.sandbox.give_to_job([self.work, self.root / "uploads"])
            command = self.sandbox.command(["/bin/bash", str(script)], self.work,
                                           [self.root / "uploads", self.root / "parameters.json", script])
        except (SandboxError, OSError) as exc:
            self.finish({"phase": "ERROR", "message": f"the job's sandbox cannot be set up: {exc}"})
            return 1
        code = self.execute(command, self.sandbox.enabled)
        return 1 if code is None else self.conclude(code)

    def execute(self, command: list[str], sandboxed: bool) -> int | None:
        """Run the script within executionDuration: its exit status, or None when it could not start
        or ran out of time (then the job's end is reported here)."""
        duration = self.spec.get("execution_duration") or 0
        with open(self.root / "stdout.log", "wb") as out, open(self.root / "stderr.log", "wb") as err:
            try:
                self.proc = subprocess.Popen(
                    command, cwd=self.work, env=self.environment(sandboxed),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, process_group=0, close_fds=True)
            except OSError as exc:
                self.finish({"phase": "ERROR", "message": f"cannot start the job's script: {exc}"})
                return None
            (self.root / "script.pgid").write_text(str(self.proc.pid))
            try:
                return self.proc.wait(timeout=duration if duration > 0 else None)
            except subprocess.TimeoutExpired:
                self.kill_script(self.spec.get("kill_grace", 2.0))
                self.finish({"phase": "ABORTED", "message":
                             f"executionDuration of {duration} s exceeded: the job was stopped"})
                return None

    def conclude(self, code: int) -> int:
        """Report how a script that ran to its end (exit status ``code``) ended the job."""
        if self.killed_by_signal is not None:
            if self.proc is not None:
                self.proc.wait()
            self.finish({"phase": "ABORTED", "message":
                         f"the job was stopped by signal {signal.Signals(self.killed_by_signal).name}"})
            return 1
        if code != 0:
            why = f"exit status {code}" if code > 0 else f"killed by signal {signal.Signals(-code).name}"
            found = self.collect(strict=False)[0]
            self.keep_steps()
            self.finish({"phase": "ERROR", "message": f"the job's script failed ({why}){self.stderr_tail()}",
                         "results": found})
            return 1
        found, missing = self.collect(strict=True)
        self.keep_steps()
        if missing:
            self.finish({"phase": "ERROR", "results": found,
                         "message": "the job's script did not produce " + ", ".join(missing)})
            return 1
        self.finish({"phase": "COMPLETED", "results": found})
        return 0

    def stderr_tail(self) -> str:
        try:
            with open(self.root / "stderr.log", "rb") as f:
                f.seek(max(0, os.path.getsize(self.root / "stderr.log") - 300))
                lines = f.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1].strip()}" if lines else ""

    # ---- results -----------------------------------------------------------------------------
    def collect(self, strict: bool) -> tuple[list[JSON], list[str]]:
        found: list[JSON] = []
        missing: list[str] = []
        for spec in self.spec["generated"]:
            pattern = spec["file"]
            is_glob = any(c in pattern for c in "*?[")
            matches = sorted(glob.glob(glob.escape(str(self.work)) + "/" + pattern)) if is_glob else \
                ([str(self.work / pattern)] if (self.work / pattern).is_file() else [])
            if not matches and spec.get("required", not is_glob):
                missing.append(f"{spec['name']} ({pattern})")
            for path in matches:
                src = Path(path)
                if not src.is_file() or src.is_symlink():
                    continue
                dest = self.results / src.name
                os.replace(src, dest)
                digest = hashlib.sha256()
                with open(dest, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                # A hint only: the server types results from the definition and its own table.
                ctype = spec.get("content_type") or ""
                found.append({"result_id": src.name if is_glob else spec["name"], "file_name": src.name,
                              "content_type": ctype or "application/octet-stream",
                              "size": dest.stat().st_size, "sha256": digest.hexdigest()})
        return found, (missing if strict else [])

    def keep_steps(self) -> None:
        """The script's PROV-JSON of its own steps ($OPUS_WORK_DIR/provenance.json), when it wrote one
        (and no result took it): kept at the job's root, where provenance grafts it under the job."""
        src = self.work / "provenance.json"
        try:
            if src.is_file() and not src.is_symlink():
                os.replace(src, self.root / "provenance.json")
        except OSError as exc:
            self.log(f"cannot keep provenance.json: {exc}")

    # ---- inputs given as URLs ---------------------------------------------------------------------
    def fetch_inputs(self) -> str:
        """Download every URL input; "" when all arrived, else the error message for the job."""
        done = []
        for item in self.spec["fetch"]:
            path = Path(item["path"])
            try:
                size, digest, ctype = fetch(item["url"], path, self.spec.get("fetch_hosts", []),
                                            self.spec.get("fetch_timeout", 300),
                                            self.spec.get("fetch_max_size", 1 << 30), hashlib.sha256())
            except (OSError, ValueError) as exc:
                path.unlink(missing_ok=True)
                path.with_name(f".{path.name}.part").unlink(missing_ok=True)
                return f"input {item['name']!r}: cannot fetch {item['url']}: {exc}"
            self.log(f"fetched {item['url']} for {item['name']}: {size} bytes")
            done.append({"name": item["name"], "url": item["url"], "file": path.name, "size": size,
                         "sha256": digest, "content_type": ctype})
        (self.root / "fetched.json").write_text(json.dumps(done, indent=1))
        return ""


def _http_post(url: SplitResult, body: bytes) -> tuple[int, bytes]:
    """POST a JSON body; return (status, body).  Raises OSError when the server cannot be reached."""
    host = url.hostname or "127.0.0.1"
    if url.scheme == "https":
        import http.client  # only for https callbacks: see the note on start-up above

        conn = http.client.HTTPSConnection(host, url.port or 443, timeout=30)
        try:
            conn.request("POST", url.path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
    port = url.port or 80
    with socket.create_connection((host, port), timeout=30) as sock:
        head = (f"POST {url.path} HTTP/1.0\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        sock.sendall(head + body)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    raw = b"".join(chunks)
    try:
        status = int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise OSError(f"malformed HTTP answer {raw[:80]!r}") from None
    return status, raw.split(b"\r\n\r\n", 1)[-1]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: wrapper.py <job dir>/job.json", file=sys.stderr)
        return 2
    wrapper = Wrapper(argv[1])
    try:
        return wrapper.run()
    except Exception as exc:  # report anything unexpected rather than vanish silently
        wrapper.log(f"wrapper failed: {exc!r}")
        wrapper.finish({"phase": "ERROR", "message": f"the job wrapper failed: {exc}"})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
