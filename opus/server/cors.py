"""Cross-origin requests (CORS) from the pages of other sites, allowed by ``CORS_ORIGINS``.

* A listed origin (``https://compose.example.org``) gets ``Access-Control-Allow-Origin: <origin>``
  with ``Access-Control-Allow-Credentials: true``: its scripts may use the visitor's OPUS session
  (the cookie) as well as Basic or Bearer tokens.  State-changing requests with the cookie still
  need the session's CSRF token, which only such an origin can read (``GET /web/session``).
* ``*`` lets any other origin read and call the API with explicit credentials (a token in
  ``Authorization``) but never with the cookie: no ``Allow-Credentials`` for them.
* Any other origin gets no CORS header at all, so browsers keep its scripts out.

Preflights (``OPTIONS`` with ``Access-Control-Request-Method``) are answered before routing.
"""

from __future__ import annotations

from bottle import Bottle, HTTPResponse, request, response

from opus.settings import Settings

ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Accept, Range, X-CSRF-Token, Idempotency-Key"
EXPOSE_HEADERS = ("Location, Content-Disposition, Content-Range, Content-Length, Digest, WWW-Authenticate, "
                  "Retry-After")
MAX_AGE = "600"


def _headers(origin: str, origins: tuple[str, ...]) -> dict[str, str] | None:
    """The CORS headers for a request from ``origin``; None if it is not allowed."""
    if origin in origins:
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}
    if "*" in origins and origin:
        return {"Access-Control-Allow-Origin": "*"}
    return None


def install(app: Bottle, settings: Settings) -> None:
    origins = tuple(o.rstrip("/") for o in settings.CORS_ORIGINS)
    if not origins:
        return  # same-origin only: not even a Vary header

    def _preflight() -> None:
        env = request.environ
        if env.get("REQUEST_METHOD") != "OPTIONS" or "HTTP_ACCESS_CONTROL_REQUEST_METHOD" not in env:
            return
        headers = _headers(env.get("HTTP_ORIGIN", ""), origins)
        if headers is None:
            raise HTTPResponse("origin not allowed\n", status=403, headers={"Content-Type": "text/plain; charset=UTF-8",
                                                                            "Vary": "Origin"})
        headers.update({"Access-Control-Allow-Methods": ALLOW_METHODS, "Access-Control-Allow-Headers": ALLOW_HEADERS,
                        "Access-Control-Max-Age": MAX_AGE, "Content-Length": "0"})
        raise HTTPResponse(status=204, headers=headers)

    def _actual() -> None:
        headers = _headers(request.environ.get("HTTP_ORIGIN", ""), origins)
        if headers is None:
            response.set_header("Vary", "Origin")
            return
        for name, value in headers.items():
            response.set_header(name, value)
        response.set_header("Access-Control-Expose-Headers", EXPOSE_HEADERS)

    app.add_hook("before_request", _preflight)
    app.add_hook("after_request", _actual)
