"""The Apache route of single sign-on (docs/single-sign-on.md, "The Apache route"): Debian's
mod_auth_openidc in front of OPUS under mod_wsgi, against the test OpenID provider of tests/test_oidc.py.

A private Apache (its own port, pid file and logs, as tests/test_packaging.py runs one) with
deploy/apache-opus.conf and the mod_auth_openidc block of docs/single-sign-on.md, only their paths,
URLs and secrets changed.  OPUS runs from this checkout (the system Python mod_wsgi is built for, with
the checkout's virtualenv on its path).  The user signs in at the provider's form; Apache passes its
name as REMOTE_USER (AUTH_REMOTE_USER = True); API clients with tokens and without any session still
get OPUS's own answers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import pytest
import requests
from helpers import wait_for
from private_apache import APACHE_USER, apache_binary, free_port, running, write_config
from test_oidc import authorize, provider  # noqa: F401  (provider: a fixture)

from opus.settings import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:get_jwt_config:DeprecationWarning")]
CLIENT_SECRET = "the apache client's secret"


def _doc_block() -> str:
    """The ```apache block of docs/single-sign-on.md."""
    text = (REPO_ROOT / "docs" / "single-sign-on.md").read_text()
    blocks = re.findall(r"```apache\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def _config(root: Path, port: int, issuer: str, settings: Path) -> Path:
    site = sysconfig.get_paths()["purelib"]  # the checkout's virtualenv: pure and compiled cp311 modules
    wsgi = (REPO_ROOT / "deploy" / "apache-opus.conf").read_text()
    for old, new in (("/opt/opus/src/opus", str(REPO_ROOT / "opus")), ("python-home=/opt/opus/venv",
                     f"python-path={REPO_ROOT}:{site}"), ("/etc/opus/settings.py", str(settings)),
                     ("/var/lib/opus", str(root / "var")), ("user=opus group=opus",
                                                            f"user={APACHE_USER} group={APACHE_USER}")):
        assert old in wsgi, old
        wsgi = wsgi.replace(old, new)
    sso = _doc_block()
    for old, new in (("https://login.example.org/realms/astro", issuer), ("OIDCClientID opus-apache",
                     "OIDCClientID opus-apache-test"), ('OIDCClientSecret "…"', f'OIDCClientSecret "{CLIENT_SECRET}"'),
                     ("https://uws.example.org", f"http://127.0.0.1:{port}")):
        assert old in sso, old
        sso = sso.replace(old, new)
    return write_config(root, port, ("mpm_event", "authz_core", "authz_user", "authn_core", "env", "mime", "wsgi",
                                     "auth_openidc"), f"{wsgi}\n{sso}")


def _serving(url: str) -> bool:
    try:
        return requests.get(f"{url}/availability", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_mod_auth_openidc_signs_in_through_the_provider_and_opus_trusts_remote_user(provider):  # noqa: F811
    apache = apache_binary("wsgi", "auth_openidc")
    provider.user("sub-olga", preferred_username="olga", groups=["astro"])
    root = Path(tempfile.mkdtemp(prefix="opus-apache-oidc-", dir="/tmp"))  # Apache's user must reach it
    try:
        root.chmod(0o755)
        port = free_port()
        url = f"http://127.0.0.1:{port}/opus"
        settings = root / "settings.py"
        settings.write_text(f"DATA_DIR = {str(root / 'var')!r}\nBASE_URL = {url!r}\nALLOW_ANONYMOUS = False\n"
                            "AUTH_REMOTE_USER = True\nREMOTE_USER_JOBDEFS = ('dummy',)\nMAINTENANCE_INTERVAL = 0\n")
        env = {"PATH": os.environ["PATH"], "OPUS_SETTINGS": str(settings), "LANG": "C.UTF-8"}
        init = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "opus"), "init", "--user", APACHE_USER],
                              cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert init.returncode == 0, init.stderr[-2000:]
        token = re.search(r"\b[0-9a-f]{16}\.\S+", init.stdout + init.stderr).group(0)
        config = _config(root, port, provider.url, settings)
        with running(apache, config, env):
            wait_for(lambda: _serving(url), timeout=60, what="Apache to serve OPUS")

            # A browser: the web client's pages send it to the provider first.
            browser = requests.Session()
            r = browser.get(f"{url}/web/jobs", allow_redirects=False)
            assert r.status_code == 302 and r.headers["Location"].startswith(provider.url + "/oauth2/authorize"), \
                (r.status_code, r.text[:500], (root / "error.log").read_text()[-2000:])
            back = authorize(browser, r.headers["Location"], "sub-olga")
            assert back.startswith(f"{url}/oidc-redirect?")
            r = browser.get(back, allow_redirects=False)  # mod_auth_openidc: code exchange, ID token, session
            assert r.status_code == 302 and r.headers["Location"].endswith("/opus/web/jobs"), \
                (r.status_code, r.text[:500], (root / "error.log").read_text()[-2000:])
            assert browser.get(f"{url}/web/jobs").status_code == 200
            session = browser.get(f"{url}/web/session").json()
            assert session["user"] == "olga" and not session["admin"]  # REMOTE_USER: a name, no stored user
            # REMOTE_USER_JOBDEFS: it may create dummy jobs, not sleep jobs.
            made = browser.post(f"{url}/rest/dummy", data={"text": "x"}, allow_redirects=False)
            assert made.status_code == 303 and made.headers["Location"].startswith(f"{url}/rest/dummy/")
            assert browser.post(f"{url}/rest/sleep", data={"seconds": "1"}, allow_redirects=False).status_code == 403

            # API clients: no redirect to the provider; OPUS's own 401, and tokens work.
            anonymous = requests.get(f"{url}/rest/dummy", allow_redirects=False)
            assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers
            assert requests.get(f"{url}/rest/dummy", auth=("admin", token)).status_code == 200
            assert requests.get(f"{url}/capabilities").status_code == 200
            # A REMOTE_USER header from a client is nothing: only Apache sets REMOTE_USER.
            forged = requests.get(f"{url}/rest/dummy", headers={"Remote-User": "admin", "X-Remote-User": "admin"},
                                  allow_redirects=False)
            assert forged.status_code == 401
    finally:
        shutil.rmtree(root, ignore_errors=True)
