"""The job wrapper: runs one job's script and reports to the server.

Run as ``python -I -S wrapper.py <job dir>/job.json`` by the local manager (and by the SLURM batch
script), so it uses the standard library only and starts fast.  It

* fetches the inputs given as URLs (``jobfetch.py``);
* runs ``bash script.sh`` (as ``jobsandbox.script_command`` says) in the job's work directory, in a
  process group of its own, inside the job sandbox (``jobsandbox.py``: bubblewrap, as the
  unprivileged job user), with the parameters given as environment variables and in
  ``parameters.json`` -- values are never parsed as shell;
* reports EXECUTING (in the background, so the script is not delayed), then COMPLETED, ERROR or
  ABORTED to ``POST <callback>/handler/job_event`` with the job's HMAC token;
* enforces executionDuration to the second: SIGTERM to the script's process group, SIGKILL after a
  grace period, phase ABORTED with a message saying why;
* on SIGTERM (an ABORT from the server) kills the script's group the same way;
* collects the declared results from the work directory into the result area, with size and
  SHA-256;
* writes its final report first over its reserved slot (``jobrecord.py``: a full disk cannot stop
  it), then to ``report.json``, before sending it; it retries the callback with backoff while the
  server is away (for ``CALLBACK_RETRY_SECONDS`` locally, a few seconds under SLURM, whose epilog
  and reconciliation recover the report), so that no completion is lost;
* holds the job's launch record (``jobrecord.py``) for its whole life, notes its pid and the start
  of the script there, and never starts a script that was started before;
* says "no space left on device while ..." when a full disk ended the job.
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
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

# Its siblings travel with it (opus.managers.slurm copies them next to it when the cluster does not
# share DATA_DIR).  mypy reads the first branch: the second imports the same files by path.
if TYPE_CHECKING or __package__:  # imported as opus.managers.wrapper (tests)
    from . import jobrecord
    from .jobcallback import post
    from .jobfetch import fetch
    from .jobsandbox import (Sandbox, SandboxError, become_subreaper, kill_descendants, script_command,
                             terminate)
else:  # run as a script with -I (no script directory on sys.path): the modules beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import jobrecord  # noqa: E402
    from jobcallback import post  # noqa: E402
    from jobfetch import fetch  # noqa: E402
    from jobsandbox import (Sandbox, SandboxError, become_subreaper, kill_descendants,  # noqa: E402
                            script_command, terminate)

#: A report to the server, or the job's spec: parsed or written JSON.
JSON = dict[str, Any]

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Seconds a wrapper under SLURM retries its final report: it must not hold the allocation while
#: the server is down (the epilog and the reconciliation read report.json).
SLURM_REPORT_RETRY = 10
#: Free bytes under which a failed job is said to have met a full disk (a write that failed for want
#: of space leaves less than a block behind; 64 KiB allows for larger blocks).
FULL_BELOW = 64 * 1024


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Wrapper:
    def __init__(self, spec_path: str, launch_fd: int | None = None) -> None:
        self.spec_path = Path(spec_path)
        self.spec: JSON = json.loads(self.spec_path.read_text())
        self.root = self.spec_path.parent
        self.work = self.root / "work"
        self.results = self.root / "results"
        self.proc: subprocess.Popen[bytes] | None = None
        self.sandbox: Sandbox | None = None
        self.killed_by_signal: int | None = None
        self._sent_executing: threading.Thread | None = None
        #: The launch record's descriptor, locked while this process lives (inherited, or taken).
        self.launch_fd = launch_fd
        #: What the wrapper is doing, for a "no space left on device while ..." message.
        self.step = "preparing the job"
        self.start_time = ""

    # ---- messages ----------------------------------------------------------------------------
    def log(self, message: str) -> None:
        try:
            with open(self.root / "wrapper.log", "a", encoding="utf-8") as f:
                f.write(f"{now_iso()} {message}\n")
        except OSError:
            pass  # a full disk: the log is the first thing to give up

    def post(self, report: JSON, retry_seconds: float) -> bool:
        """POST one report; retry on connection errors and 5xx with backoff for ``retry_seconds``."""
        body = json.dumps({**report, "job_id": self.spec["job_id"], "token": self.spec["token"]}).encode()
        return post(self.spec["callback_url"], body, str(report["phase"]), retry_seconds, self.log)

    def finish(self, report: JSON) -> None:
        """Keep the final report (slot first, then report.json) and send it.  It does not wait for
        the EXECUTING report: the server accepts them in either order."""
        self.step = "writing its report"
        report.setdefault("end_time", now_iso())
        if self.start_time:  # the start, should the EXECUTING report come late or never
            report.setdefault("start_time", self.start_time)
        for keep in (jobrecord.write_slot, jobrecord.write_report):
            try:
                keep(self.root, report)
            except OSError as exc:
                self.log(f"cannot keep the report with {keep.__name__}: {exc}")
        retry = self.spec.get("retry_seconds", 900)
        if self.spec.get("manager") == "slurm":
            retry = min(retry, SLURM_REPORT_RETRY)
        self.post(report, retry)

    def disk_full(self) -> bool:
        """Whether the job's file system is (all but) full."""
        try:
            st = os.statvfs(self.root)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < FULL_BELOW

    def full_note(self, what: str) -> str:
        """``what``, prefixed with the full disk when the disk is full."""
        return f"no space left on device while the job's script ran: {what}" if self.disk_full() else what

    # ---- the script ----------------------------------------------------------------------------
    def environment(self, sandboxed: bool) -> dict[str, str]:
        env = {
            "PATH": SAFE_PATH, "HOME": str(self.work), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "OPUS_JOB_ID": self.spec["job_id"], "OPUS_JOB_NAME": self.spec["jobname"],
            "OPUS_JOB_DIR": str(self.root), "OPUS_WORK_DIR": str(self.work),
            "OPUS_RESULTS_DIR": str(self.results),
            "OPUS_PARAMETERS": str(self.root / "parameters.json"),
            # The sandbox has a private /tmp; without it, temporary files stay in the work directory.
            "TMPDIR": "/tmp" if sandboxed else str(self.work),
            # The Python running this wrapper (OPUS's own environment): scripts run Python code with it.
            "OPUS_PYTHON": sys.executable,
        }
        # The original OPUS's names (aliases), then each result's file name ($<result>,
        # $OPUS_RESULT_<result>), then the parameters and inputs, which win as they did there.
        env.update(JOBID=env["OPUS_JOB_ID"], jd=env["OPUS_JOB_DIR"], wd=env["OPUS_WORK_DIR"],
                   rs=env["OPUS_RESULTS_DIR"])
        env.update(self.spec.get("variables") or {})
        env.update(self.spec["environment"])
        return env

    def kill_script(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            if self.sandbox is not None and not self.sandbox.enabled:
                kill_descendants(os.getpid())  # what the script left behind (see jobsandbox)
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
        if not (self.sandbox is not None and self.sandbox.enabled):
            kill_descendants(os.getpid())  # setsid children too (the sandbox's PID namespace does it there)
        self.proc.wait()

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.killed_by_signal = signum
        threading.Thread(target=self.kill_script, args=(self.spec.get("kill_grace", 2.0),), daemon=True).start()

    def claim(self) -> int | None:
        """Hold the job's launch record and note this wrapper in it: None to go on, else the exit
        status (another wrapper runs the job, or its script was started before: not run again)."""
        if self.launch_fd is None:
            try:
                self.launch_fd = jobrecord.hold(self.root)
            except jobrecord.Busy as exc:
                self.log(f"not run: {exc}")
                return 0
        before = [item for item in jobrecord.lines(self.root) if "script" in item]
        if before:
            self.log(f"not run: the job's script was started before, at {before[-1].get('at')}")
            if jobrecord.saved_report(self.root) is None:
                self.finish({"phase": "ERROR", "message": "the job's script was started before "
                             f"({before[-1].get('at')}) and did not report; it is not run again"})
            return 1
        jobrecord.note(self.launch_fd, wrapper=os.getpid(), host=socket.gethostname(), at=now_iso())
        if not (self.root / jobrecord.SLOT).is_file():
            jobrecord.reserve_slot(self.root)
        return None

    def run(self) -> int:
        """Run the job to its end and report it: 0 when it COMPLETED, else 1."""
        refused = self.claim()
        if refused is not None:
            return refused
        self.work.mkdir(exist_ok=True)
        self.results.mkdir(exist_ok=True)
        (self.root / "parameters.json").write_text(json.dumps(self.spec["parameters"], indent=1))
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.start_time = start = now_iso()
        self._sent_executing = threading.Thread(
            target=self.post, args=({"phase": "EXECUTING", "start_time": start}, 60), daemon=True)
        self._sent_executing.start()
        if self.spec.get("fetch"):
            self.step = "fetching its inputs"
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
            argv = script_command(str(script), self.spec.get("shell"), bool(self.spec.get("errexit")))
            command = self.sandbox.command(argv, self.work,
                                           [self.root / "uploads", self.root / "parameters.json", script])
        except (SandboxError, OSError) as exc:
            self.finish({"phase": "ERROR", "message": f"the job's sandbox cannot be set up: {exc}"})
            return 1
        if not self.sandbox.enabled:
            become_subreaper()  # what the script leaves behind stays ours to stop (jobsandbox)
        self.step = "running the job's script"
        code = self.execute(command, self.sandbox.enabled)
        return 1 if code is None else self.conclude(code)

    def execute(self, command: list[str], sandboxed: bool) -> int | None:
        """Run the script within executionDuration: its exit status, or None when it could not start
        or ran out of time (then the job's end is reported here)."""
        duration = self.spec.get("execution_duration") or 0
        with open(self.root / "stdout.log", "wb") as out, open(self.root / "stderr.log", "wb") as err:
            assert self.launch_fd is not None
            jobrecord.note_durable(self.launch_fd, self.root, script="started", at=now_iso())  # never twice
            try:
                self.proc = subprocess.Popen(
                    command, cwd=self.work, env=self.environment(sandboxed),
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, process_group=0, close_fds=True)
            except OSError as exc:
                self.finish({"phase": "ERROR", "message": f"cannot start the job's script: {exc}"})
                return None
            try:
                (self.root / "script.pgid").write_text(str(self.proc.pid))
            except OSError as exc:  # a full disk: the wrapper still stops the script itself
                self.log(f"cannot write script.pgid: {exc}")
            try:
                code = self.proc.wait(timeout=duration if duration > 0 else None)
                self.note_end(code)
                if not sandboxed:
                    kill_descendants(os.getpid())  # nothing of a job outlives its script
                return code
            except subprocess.TimeoutExpired:
                self.kill_script(self.spec.get("kill_grace", 2.0))
                self.finish({"phase": "ABORTED", "message":
                             f"executionDuration of {duration} s exceeded: the job was stopped"})
                return None

    def note_end(self, code: int) -> None:
        """Say in the launch record that the script ended (the server's executionDuration check
        then leaves the wrapper its time to collect and report)."""
        try:
            assert self.launch_fd is not None
            jobrecord.note(self.launch_fd, ended=now_iso(), status=code)
        except OSError as exc:
            self.log(f"cannot note the script's end: {exc}")

    def conclude(self, code: int) -> int:
        """Report how a script that ran to its end (exit status ``code``) ended the job."""
        if self.killed_by_signal is not None:
            if self.proc is not None:
                self.proc.wait()
            self.finish({"phase": "ABORTED", "message":
                         f"the job was stopped by signal {signal.Signals(self.killed_by_signal).name}"})
            return 1
        self.step = "moving its results"
        if code != 0:
            why = f"exit status {code}" if code > 0 else f"killed by signal {signal.Signals(-code).name}"
            found = self.collect(strict=False)[0]
            self.keep_steps()
            self.finish({"phase": "ERROR", "results": found,
                         "message": self.full_note(f"the job's script failed ({why}){self.stderr_tail()}")})
            return 1
        found, missing = self.collect(strict=True)
        self.keep_steps()
        if missing:
            self.finish({"phase": "ERROR", "results": found,
                         "message": self.full_note("the job's script did not produce " + ", ".join(missing))})
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
        """The script's PROV-JSON of its own steps (work/provenance.json, or the original's name
        internal_provenance.json) when no result took it: kept as <job>/provenance.json (grafted)."""
        for name in ("provenance.json", "internal_provenance.json"):
            src = self.work / name
            try:
                if src.is_file() and not src.is_symlink():
                    os.replace(src, self.root / "provenance.json")
                    return
            except OSError as exc:
                self.log(f"cannot keep {name}: {exc}")

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


def main(argv: list[str]) -> int:
    """``wrapper.py <job dir>/job.json [--launch-fd=N]``: N is the job's launch record, locked, as the
    local manager passes it (without it the wrapper locks the record itself)."""
    fd = argv[2].removeprefix("--launch-fd=") if len(argv) == 3 else None
    if len(argv) not in (2, 3) or (fd is not None and not fd.isdigit()):
        print("usage: wrapper.py <job dir>/job.json [--launch-fd=N]", file=sys.stderr)
        return 2
    wrapper = Wrapper(argv[1], int(fd) if fd is not None else None)
    try:
        return wrapper.run()
    except Exception as exc:  # report anything unexpected rather than vanish silently
        wrapper.log(f"wrapper failed: {exc!r}")
        if jobrecord.is_full(exc):
            message = f"no space left on device while {wrapper.step}: {exc}"
        else:
            message = f"the job wrapper failed: {exc}"
        wrapper.finish({"phase": "ERROR", "message": message})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
