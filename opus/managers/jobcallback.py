"""The job wrapper's callback to the server (standard library only, like ``jobsandbox.py``).

urllib.request/http.client cost ~50 ms of start-up (email, ssl): plain http callbacks use a socket
directly, https ones import http.client when needed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit


def post(callback_url: str, body: bytes, phase: str, retry_seconds: float,
         log: Callable[[str], None]) -> bool:
    """POST a report (``body``, JSON) to ``<callback_url>/handler/job_event``; retry on connection
    errors and 5xx with backoff (0.2 s doubling, at most 30 s) for ``retry_seconds``."""
    url = urlsplit(callback_url.rstrip("/") + "/handler/job_event")
    deadline = time.monotonic() + retry_seconds
    delay = 0.2
    while True:
        try:
            status, answer = http_post(url, body)
            if status < 300:
                return True
            if status < 500:
                log(f"callback {phase} refused: HTTP {status} {answer[:200]!r}")
                return False
            error = f"HTTP {status}"
        except OSError as exc:
            error = str(exc) or type(exc).__name__
        if time.monotonic() + delay > deadline:
            log(f"callback {phase} failed for good: {error}")
            return False
        log(f"callback {phase} failed ({error}); retrying in {delay:.1f} s")
        time.sleep(delay)
        delay = min(delay * 2, 30)


def http_post(url: SplitResult, body: bytes) -> tuple[int, bytes]:
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
