"""OpenID Connect sign-in, the protocol side (issue 17; docs/single-sign-on.md), with Authlib.

* The provider's metadata, from ``<OIDC_ISSUER>/.well-known/openid-configuration``, checked with
  Authlib's ``OpenIDProviderMetadata``; its ``issuer`` must be OIDC_ISSUER exactly (OpenID Connect
  Discovery 4.3).  The metadata and the provider's keys (``jwks_uri``) are kept an hour by each
  process; the keys are read again, once, when an ID token names a key id they lack.
* The authorization request (Authlib's ``OAuth2Session``): response_type=code, a random state and
  nonce, PKCE with S256.  What the callback needs (state, nonce, code verifier, where to go after)
  travels in a cookie signed with HMAC-SHA256 under a key derived from the server secret: ``seal``
  and ``unseal``; it is valid ``STATE_LIFETIME`` seconds.
* The code exchange at the token endpoint (client_secret_basic, with the PKCE verifier), then the ID
  token's checks (``validate_id_token``): its signature with the provider's keys, for the asymmetric
  algorithms its metadata lists only (never "none" nor a shared-secret HS*), then iss, aud (our client
  id; azp when there are several audiences), exp and iat (``LEEWAY`` seconds of clock skew), nonce.

All HTTP goes through requests with OIDC_TIMEOUT; a provider that cannot be reached, or that answers
something other than what the protocol says, is a ``ProviderError`` (502).  A refusal (a code used
twice, an ID token that fails a check) is a ``SignInFailed`` (401).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import requests

from opus.auth.identity import server_secret
from opus.errors import OpusError
from opus.settings import Settings

#: Seconds a sign-in may take at the provider (the state cookie's life).
STATE_LIFETIME = 600
#: Seconds of clock skew allowed on exp and iat.
LEEWAY = 120
#: Seconds the provider's metadata and keys are kept by a process.
METADATA_TTL = 3600
#: The only algorithms an ID token may be signed with (when the provider's metadata lists them).
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MAX_DOCUMENT = 1024 * 1024


@functools.cache
def _lib() -> SimpleNamespace:
    """Authlib and joserfc, imported by the first single sign-on of a process: they take about 18 MB
    a worker, which a site without single sign-on never pays."""
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oidc.core import CodeIDToken
    from authlib.oidc.discovery import OpenIDProviderMetadata
    from joserfc import jwt
    from joserfc.errors import InvalidKeyIdError, JoseError
    from joserfc.jwk import KeySet
    from joserfc.jws import JWSRegistry
    return SimpleNamespace(OAuthError=OAuthError, OAuth2Session=OAuth2Session, CodeIDToken=CodeIDToken,
                           OpenIDProviderMetadata=OpenIDProviderMetadata, jwt=jwt, InvalidKeyIdError=InvalidKeyIdError,
                           JoseError=JoseError, KeySet=KeySet, JWSRegistry=JWSRegistry)


class ProviderError(OpusError):
    """The identity provider could not be reached, or answered outside the protocol."""

    status = 502


class SignInFailed(OpusError):
    """The provider refused the sign-in, or its answer failed a check."""

    status = 401


# ---- the pending sign-in (the state cookie) --------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """A sign-in under way: what the callback checks and needs."""

    state: str
    nonce: str
    verifier: str
    next_url: str
    issued: int


def new_pending(next_url: str) -> Pending:
    return Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_url,
                   int(time.time()))


def _key(settings: Settings) -> bytes:
    return hmac.new(server_secret(settings), b"opus-oidc-state:v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def seal(settings: Settings, pending: Pending) -> str:
    """The cookie value of ``pending``: its JSON, base64url, and its HMAC."""
    payload = _b64(json.dumps(asdict(pending), separators=(",", ":")).encode())
    return f"{payload}.{_b64(hmac.new(_key(settings), payload.encode(), hashlib.sha256).digest())}"


def unseal(settings: Settings, value: str | None, now: float | None = None) -> Pending | None:
    """The pending sign-in a cookie value carries; None when absent, forged, malformed or expired."""
    payload, _, mac = (value or "").partition(".")
    expected = _b64(hmac.new(_key(settings), payload.encode(), hashlib.sha256).digest())
    if not payload or not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        pending = Pending(**data)
    except (ValueError, TypeError):
        return None
    age = (time.time() if now is None else now) - pending.issued
    return pending if 0 <= age <= STATE_LIFETIME else None


# ---- the provider's metadata and keys ------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderInfo:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


_CACHE: dict[str, tuple[float, Any]] = {}
_LOCK = threading.Lock()


def forget_provider() -> None:
    """Drop the metadata and keys kept by this process (read again on the next sign-in)."""
    with _LOCK:
        _CACHE.clear()


def _get_json(url: str, timeout: float, what: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=timeout, headers={"Accept": "application/json"}, allow_redirects=False)
    except requests.RequestException as exc:
        raise ProviderError(f"the identity provider could not be reached for its {what} ({url}): "
                            f"{type(exc).__name__}") from None
    if response.status_code != 200 or len(response.content) > MAX_DOCUMENT:
        raise ProviderError(f"the identity provider answered {response.status_code} for its {what} ({url})")
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise ProviderError(f"the identity provider's {what} ({url}) is not a JSON object")
    return data


def _cached(key: str, load: Any, refresh: bool = False) -> Any:
    with _LOCK:
        hit = _CACHE.get(key)
    if hit is not None and not refresh and time.monotonic() - hit[0] < METADATA_TTL:
        return hit[1]
    value = load()
    with _LOCK:
        _CACHE[key] = (time.monotonic(), value)
    return value


def provider_info(settings: Settings) -> ProviderInfo:
    """The provider's endpoints and algorithms (from its discovery document, kept an hour)."""
    issuer = settings.OIDC_ISSUER

    def load() -> ProviderInfo:
        url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        metadata = _lib().OpenIDProviderMetadata(_get_json(url, settings.OIDC_TIMEOUT, "metadata"))
        try:
            for check in (metadata.validate_issuer, metadata.validate_authorization_endpoint,
                          metadata.validate_token_endpoint, metadata.validate_jwks_uri):
                check()
        except ValueError as exc:
            raise ProviderError(f"the identity provider's metadata is not valid: {exc}") from None
        if metadata["issuer"] != issuer:
            raise ProviderError(f"the identity provider's metadata names the issuer {metadata['issuer']!r}, "
                                f"not OIDC_ISSUER {issuer!r}")
        listed = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(a for a in listed if a in ASYMMETRIC)
        if not algorithms:
            raise ProviderError(f"the identity provider signs ID tokens with none of {', '.join(ASYMMETRIC)}")
        return ProviderInfo(issuer, metadata["authorization_endpoint"], metadata["token_endpoint"],
                            metadata["jwks_uri"], algorithms)

    info: ProviderInfo = _cached(f"metadata {issuer}", load)
    return info


def provider_keys(settings: Settings, info: ProviderInfo, refresh: bool = False) -> dict[str, Any]:
    keys: dict[str, Any] = _cached(f"keys {info.jwks_uri}", lambda: _get_json(
        info.jwks_uri, settings.OIDC_TIMEOUT, "keys"), refresh)
    return keys


# ---- the flow ------------------------------------------------------------------------------------------
def _client(settings: Settings, redirect_uri: str) -> Any:
    scopes = ["openid"] + [s for s in settings.OIDC_SCOPES if s != "openid"]
    return _lib().OAuth2Session(settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET or None, scope=" ".join(scopes),
                         redirect_uri=redirect_uri, code_challenge_method="S256",
                         token_endpoint_auth_method="client_secret_basic" if settings.OIDC_CLIENT_SECRET
                         else "none")


def authorization_url(settings: Settings, redirect_uri: str, pending: Pending) -> str:
    """Where to send the browser: the provider's authorization endpoint with state, nonce and PKCE."""
    info = provider_info(settings)
    url, _state = _client(settings, redirect_uri).create_authorization_url(
        info.authorization_endpoint, state=pending.state, code_verifier=pending.verifier, nonce=pending.nonce)
    return str(url)


def exchange(settings: Settings, redirect_uri: str, pending: Pending, code: str) -> dict[str, Any]:
    """The code exchanged at the token endpoint; the ID token's claims, once every check passed."""
    info = provider_info(settings)
    try:
        token = _client(settings, redirect_uri).fetch_token(
            info.token_endpoint, grant_type="authorization_code", code=code, code_verifier=pending.verifier,
            timeout=settings.OIDC_TIMEOUT)
    except _lib().OAuthError as exc:
        raise SignInFailed(f"the identity provider refused to complete the sign-in ({exc.error}): "
                           "please sign in again") from None
    except requests.RequestException as exc:
        raise ProviderError(f"the identity provider could not be reached to complete the sign-in: "
                            f"{type(exc).__name__}") from None
    except ValueError:
        raise ProviderError("the identity provider's token endpoint did not answer JSON") from None
    id_token = token.get("id_token") if isinstance(token, dict) else None
    if not isinstance(id_token, str):
        raise ProviderError("the identity provider gave no ID token (is \"openid\" among the client's scopes?)")
    access_token = token.get("access_token")

    def check(keys: dict[str, Any]) -> dict[str, Any]:
        return validate_id_token(id_token, keys, issuer=info.issuer, client_id=settings.OIDC_CLIENT_ID,
                                 nonce=pending.nonce, algorithms=info.algorithms,
                                 access_token=access_token if isinstance(access_token, str) else None)

    try:
        return check(provider_keys(settings, info))
    except _lib().InvalidKeyIdError:  # the provider rolled its keys over: read them again, once
        pass
    try:
        return check(provider_keys(settings, info, refresh=True))
    except _lib().InvalidKeyIdError:
        raise SignInFailed("the ID token is not signed with a key the identity provider publishes (or names "
                           "none of several): please sign in again") from None


def validate_id_token(id_token: str, keys: dict[str, Any], *, issuer: str, client_id: str, nonce: str,
                      algorithms: tuple[str, ...], access_token: str | None = None,
                      now: int | None = None) -> dict[str, Any]:
    """The claims of ``id_token`` once its signature (one of ``keys``, a JWK set) and claims are checked;
    SignInFailed naming the check that failed (InvalidKeyIdError: no key of that id)."""
    lib = _lib()
    try:
        key_set = lib.KeySet.import_key_set(keys)
    except (lib.JoseError, ValueError, TypeError, KeyError):
        raise ProviderError("the identity provider's keys (jwks_uri) are not a valid JWK set") from None
    try:
        token = lib.jwt.decode(id_token, key_set, registry=lib.JWSRegistry(algorithms=list(algorithms)))
    except lib.InvalidKeyIdError:
        raise
    except (lib.JoseError, ValueError) as exc:
        raise SignInFailed(f"the ID token is not valid ({type(exc).__name__}): please sign in again") from None
    claims = lib.CodeIDToken(token.claims, token.header, {"iss": {"essential": True, "value": issuer},
                                                      "aud": {"essential": True, "value": client_id}},
                         {"nonce": nonce, "client_id": client_id, "access_token": access_token})
    try:
        claims.validate(now=now, leeway=LEEWAY)
    except lib.JoseError as exc:
        raise SignInFailed(f"the ID token failed a check ({exc.error}"
                           f"{': ' + str(exc.description) if exc.description else ''}): please sign in again") from None
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise SignInFailed("the ID token has no subject")
    return dict(claims)
