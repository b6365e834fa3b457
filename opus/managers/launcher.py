"""The wrapper launcher: a process that has imported the job wrapper once and forks one per job.

Starting the wrapper as a new interpreter (``python -I -S -c "import wrapper; ..."``) costs about
30 ms per job, most of it the interpreter's start and the wrapper's imports (bench/README.md).  The
local manager of the dispatching process therefore starts one launcher (``Launcher.start``) and asks
it for each wrapper over a Unix socket pair (``Launcher.spawn``): the request carries the wrapper's
arguments and working directory, and two descriptors by ``SCM_RIGHTS``: the job's locked launch
record and its wrapper log.  The launcher forks; the child makes a session of its own, puts the log
on 1 and 2 and ``/dev/null`` on 0, closes every other descriptor but the launch record, and runs the
wrapper's ``main`` exactly as a new interpreter would.  The launch record's ``flock`` belongs to the
open file description, so the child holds it as a wrapper started by ``Popen`` does.

The launcher says READY once it has imported the wrapper; a launcher that never does is given up
before any request reaches it.  It answers each request with the child's pid and a pidfd of it
(``pidfd_open``, taken before the child can be reaped, so the manager waits for the right process:
``Forked.wait``), and reaps its children.
It has no thread (it forks), and it ends when the server's end of the socket closes: the server
stopped or died.  The wrappers it forked live on, in their own sessions, and still report.

Standard library only: it runs as a bare module beside ``wrapper.py``, as the wrapper does.  Which
failures let the manager start the wrapper the old way, and which leave it to the launch record:
``NotStarted`` and ``MaybeStarted``.
"""

from __future__ import annotations

import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
#: The largest request or answer (JSON).
MAX_MESSAGE = 64 * 1024
#: Seconds the manager waits for an answer before it gives the launcher up.
ANSWER_TIMEOUT = 10.0
#: Seconds between two reapings of finished children when no request comes.
REAP_EVERY = 0.5
#: The launcher's first message: it has imported the wrapper and takes requests.
READY = b'{"ready": true}'
#: How the launcher starts: imported as a module beside the wrapper (cached bytecode), like it.
COMMAND = (sys.executable, "-I", "-S", "-c",
           "import sys; sys.path.insert(0, sys.argv.pop(1)); import launcher; "
           "sys.exit(launcher.serve(int(sys.argv[1])))",
           str(HERE))


class NotStarted(Exception):
    """The launcher started no wrapper for this request: start it another way."""


class MaybeStarted(Exception):
    """The request reached the launcher, but no answer came: a wrapper may run.  The job's launch
    record says (``jobrecord.launch_state``); the job must not be started another way now."""


# ---- the launcher process ---------------------------------------------------------------------------
def serve(fd: int) -> int:
    """The launcher's loop on its end ``fd`` of the socket pair, until the other end closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's terminal: the server decides
    sock = socket.socket(fileno=fd)
    wrapper = importlib.import_module("wrapper")  # the point of the launcher: imported once
    sock.send(READY)
    while True:
        _reap()
        if not _readable(sock.fileno(), REAP_EVERY):
            continue
        try:
            message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
        except OSError:
            return 0
        if not message:
            return 0  # the server is gone
        answer, pidfd = _answer(wrapper, message, fds)
        try:
            socket.send_fds(sock, [json.dumps(answer).encode()], [pidfd] if pidfd is not None else [])
        except OSError:
            return 0
        finally:
            if pidfd is not None:
                os.close(pidfd)


def _readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` is readable (a pidfd: its process ended) within ``timeout`` seconds (poll, not
    select: a server's descriptors go past select's 1,024)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _answer(wrapper: ModuleType, message: bytes, fds: list[int]) -> tuple[dict[str, Any], int | None]:
    """Fork a wrapper for one request: ({"pid": N}, its pidfd), or ({"error": ...}, None) when none
    was started.  The request's descriptors are closed here (the child has its copies)."""
    try:
        request = json.loads(message)
        argv, cwd = [str(a) for a in request["argv"]], str(request["cwd"])
        if len(fds) != 2:
            raise ValueError(f"2 descriptors expected, {len(fds)} received")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(wrapper, argv, cwd, fds[0], fds[1])
    except Exception as exc:  # no child: the manager starts the wrapper itself
        return {"error": repr(exc)}, None
    finally:
        for fd in fds:
            os.close(fd)
    try:
        return {"pid": pid}, os.pidfd_open(pid)
    except (AttributeError, OSError):  # an old kernel: the manager watches the pid instead
        return {"pid": pid}, None


def _child(wrapper: ModuleType, argv: list[str], cwd: str, launch_fd: int, log_fd: int) -> None:
    """In the forked child: become what ``Popen(start_new_session=True, ...)`` made, run the wrapper."""
    code: Any = 1
    try:
        os.setsid()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, launch_fd)
        os.closerange(launch_fd + 1, max(os.sysconf("SC_OPEN_MAX"), launch_fd + 2))
        os.chdir(cwd)
        sys.argv = [*argv, f"--launch-fd={launch_fd}"]
        code = wrapper.main(sys.argv)
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


# ---- the server's side ----------------------------------------------------------------------------
class Forked:
    """A wrapper the launcher forked, as the manager sees it: what it used of ``Popen``."""

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self.pid = pid
        self._pidfd = pidfd
        self._ended = False
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the wrapper has ended (its exit status is the launcher's: None), or raise
        ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        with self._lock:
            fd = None if self._ended or self._pidfd is None else os.dup(self._pidfd)
        if fd is not None:
            try:
                ended = _readable(fd, timeout)
            finally:
                os.close(fd)
        else:
            ended = self._ended or self._poll_pid(timeout)
        if not ended:
            raise subprocess.TimeoutExpired(f"wrapper {self.pid}", timeout or 0.0)
        with self._lock:
            self._ended = True
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        return None

    def _poll_pid(self, timeout: float | None) -> bool:
        """Without a pidfd: True once the pid is gone or a zombie, within ``timeout``."""
        event = threading.Event()
        waited = 0.0
        while timeout is None or waited < timeout:
            try:
                with open(f"/proc/{self.pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        return True
            except (OSError, IndexError):
                return True
            event.wait(0.05)
            waited += 0.05
        return False


class Launcher:
    """The server's end of one launcher process.  ``spawn`` may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen([*COMMAND, str(there.fileno())], pass_fds=(there.fileno(),),
                                          stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            here.close()
            raise
        finally:
            there.close()
        here.settimeout(ANSWER_TIMEOUT)
        self._sock: socket.socket | None = here
        self._ready = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._sock is not None and self._proc.poll() is None

    def spawn(self, argv: list[str], cwd: str, launch_fd: int, log_fd: int) -> Forked:
        """Have the launcher start ``wrapper.main([*argv, --launch-fd=...])`` in ``cwd``."""
        with self._lock:
            sock = self._sock
            if sock is None or self._proc.poll() is not None:
                raise NotStarted("the launcher is not running")
            if not self._ready:
                self._await_ready(sock)
            request = json.dumps({"argv": argv, "cwd": cwd}).encode()
            try:
                socket.send_fds(sock, [request], [launch_fd, log_fd])
            except OSError as exc:  # a message is sent whole or not at all (SOCK_SEQPACKET)
                raise NotStarted(f"the launcher cannot be reached: {exc}") from exc
            try:
                answer, fds = _receive(sock)
            except (OSError, ValueError) as exc:
                self._close(kill=True)  # a late answer must not be taken for the next request's
                raise MaybeStarted(f"the launcher did not answer: {exc}") from exc
        if "pid" not in answer:
            for fd in fds:
                os.close(fd)
            raise NotStarted(f"the launcher could not start the wrapper: {answer.get('error')}")
        return Forked(int(answer["pid"]), fds[0] if fds else None)

    def _await_ready(self, sock: socket.socket) -> None:
        """Wait for the launcher's READY (it is importing the wrapper): no request is sent to a
        launcher that cannot start, so such a launcher never delays a job beyond this wait."""
        try:
            message = sock.recv(MAX_MESSAGE)
        except OSError as exc:
            message = repr(exc).encode()
        if message != READY:
            self._close(kill=True)
            raise NotStarted(f"the launcher did not start: {message.decode(errors='replace') or 'it ended'}")
        self._ready = True

    def close(self) -> None:
        """Stop the launcher (it ends when its socket closes); the wrappers it forked go on."""
        with self._lock:
            self._close(kill=False)

    def _close(self, kill: bool) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if kill and self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.wait(ANSWER_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _receive(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One answer and its descriptors (close-on-exec, so that no other child of the server gets one)."""
    fds_size = socket.CMSG_SPACE(4)
    message, ancillary, _flags, _addr = sock.recvmsg(MAX_MESSAGE, fds_size, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - 3, 4))
    if not message:
        for fd in fds:
            os.close(fd)
        raise ValueError("the launcher closed its socket")
    answer = json.loads(message)
    if not isinstance(answer, dict):
        raise ValueError(f"not an answer: {answer!r}")
    return answer, fds
