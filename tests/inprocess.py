"""``requests`` calls answered by a WSGI application in this process (through WebTest), no socket.

API tests written against ``requests`` (status_code, headers, text, json(), cookies, redirects)
run unchanged against the in-process app: a transport adapter turns each prepared request into a
WSGI call (``webtest.TestApp``) and the WSGI answer into a ``requests.Response``; ``serve`` makes
every requests call to the app's base URL use it.
Tests about HTTP transport itself (gunicorn, real sockets, chunked bodies) keep a real server.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import io
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPHeaderDict

with warnings.catch_warnings():  # WebOb 1.8 imports cgi (deprecated in 3.11, gone in 3.13): not ours to fix
    warnings.filterwarnings("ignore", "'cgi' is deprecated", DeprecationWarning)
    import webtest

#: The address in-process requests appear to come from (a server behind no proxy sees the client's).
CLIENT_ADDRESS = "127.0.0.1"


class _Raw:
    """What requests (and tests) expect of ``Response.raw``: the headers (the cookie jar reads them
    too) and no-op I/O."""

    def __init__(self, headers: list[tuple[str, str]]):
        msg = http.client.HTTPMessage()
        for name, value in headers:
            msg[name] = value
        self._original_response = type("_Original", (), {"msg": msg})()
        self.headers = HTTPHeaderDict(headers)  # as urllib3's: .getlist("Set-Cookie")

    def read(self, *_args: Any, **_kwargs: Any) -> bytes:
        return b""

    def stream(self, *_args: Any, **_kwargs: Any):
        return iter(())

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class WSGIAdapter(BaseAdapter):
    """Sends every request of a session to ``app`` in this thread."""

    def __init__(self, app: Any):
        super().__init__()
        # Cookies are the requests session's business: WebTest's own jar would share them between
        # every session (and ``requests.get``) of the test, so it accepts none.
        self.testapp = webtest.TestApp(app, lint=True, cookiejar=http.cookiejar.CookieJar(
            http.cookiejar.DefaultCookiePolicy(allowed_domains=[])))

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        parts = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes):  # a file-like body (requests streams those)
            body = body.read()
        # WSGI gives header values as native strings, their bytes read as Latin-1 (PEP 3333), as every
        # real server does; requests may carry bytes.
        headers = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in request.headers.items()
                   if k.lower() not in ("content-length", "host")}
        host = request.headers.get("Host") or parts.netloc  # a Host the test sets is sent as it is
        environ = {"HTTP_HOST": host, "REMOTE_ADDR": CLIENT_ADDRESS, "SERVER_PROTOCOL": "HTTP/1.1"}
        wreq = webtest.TestRequest.blank(request.url, environ=environ, method=request.method, headers=headers)
        if body or request.method in ("POST", "PUT", "PATCH"):
            wreq.body_file = io.BytesIO(body)
            wreq.content_length = len(body)
        wres = self.testapp.do_request(wreq, status="*", expect_errors=True)
        return self._response(request, wres)

    @staticmethod
    def _response(request: requests.PreparedRequest, wres: Any) -> requests.Response:
        r = requests.Response()
        r.status_code = wres.status_int
        r.reason = wres.status.split(" ", 1)[1] if " " in wres.status else ""
        r.headers = CaseInsensitiveDict()
        for name, value in wres.headerlist:  # repeated headers joined as http.client does
            r.headers[name] = f"{r.headers[name]}, {value}" if name in r.headers else value
        r.encoding = get_encoding_from_headers(r.headers)
        r._content = wres.body
        r._content_consumed = True
        r.raw = _Raw(wres.headerlist)
        r.url = request.url or ""
        r.request = request
        r.connection = None
        return r

    def close(self) -> None:
        pass


#: Base URL -> the adapter of the in-process app serving it (see ``serve``).
_served: dict[str, WSGIAdapter] = {}
_network_send = HTTPAdapter.send


def _send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any,
          **kwargs: Any) -> requests.Response:
    """HTTPAdapter.send, except for URLs of an app served in-process."""
    for base, adapter in list(_served.items()):
        if request.url == base or (request.url or "").startswith(base + "/"):
            return adapter.send(request, *args, **kwargs)
    return _network_send(self, request, *args, **kwargs)


HTTPAdapter.send = _send  # type: ignore[method-assign]  # tests only: see ``serve``


def serve(app: Any, base_url: str) -> None:
    """Route every ``requests`` call to ``base_url`` (any session, ``requests.get``...) to ``app`` in
    this process, until ``unserve``: tests written for a real server run unchanged, with no socket.
    No real server answers at such a URL (ApiServer gives each app a port nothing listens on)."""
    _served[base_url] = WSGIAdapter(app)


def unserve(base_url: str) -> None:
    _served.pop(base_url, None)
