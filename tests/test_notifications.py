"""Notifications (issue 17, point 4): e-mail through a real SMTP server (aiosmtpd, started here) when a
job asked for it ends, the daily digest, e-mail to admins when a definition is proposed, and webhooks
under the SSRF rules of URL inputs."""

from __future__ import annotations

import email
import json
import re
import socket
import threading
from datetime import timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from conftest import ApiServer, make_settings, signed_in_sessions
from helpers import wait_final, wait_for

from opus.timeutil import utcnow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """The test SMTP server's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 Message accepted"


@pytest.fixture
def smtp():
    inbox = Inbox()
    logins = []

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.login == b"opus" and auth_data.password == b"s3cret")

    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), authenticator=authenticate,
                            auth_require_tls=False)
    controller.start()
    inbox.port = controller.port
    inbox.logins = logins
    yield inbox
    controller.stop()


def serve(tmp_path, **overrides):
    server = ApiServer(make_settings(tmp_path, **overrides))
    server.notifications = server.services.notifications
    server.as_ = signed_in_sessions(server)
    return server


@pytest.fixture
def srv(tmp_path, smtp):
    server = serve(tmp_path, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_USER="opus", SMTP_PASSWORD="s3cret",
                   MAIL_FROM="opus@uws.example.org", MAIL_DIGEST_HOUR=6,
                   MAIL_ADMINS=("ops@example.org",))
    yield server
    server.notifications.stop()
    server.stop()


def set_email(session, url, address, smtp=None):
    """Give the caller's address; with ``smtp``, confirm it through the link mailed there (an address is
    used once confirmed: opus.service.addresses), and empty the inbox."""
    r = session.put(f"{url}/notifications", json={"email": address})
    assert r.status_code == 200, r.text
    data = r.json()
    if smtp is not None and not data["emailConfirmed"]:
        (rcpt, msg), = wait_for(lambda: smtp.messages, what="the confirmation e-mail")
        assert rcpt == [address] and msg["Subject"] == "OPUS: confirm your e-mail address"
        link = re.search(r"https?://\S+/web/confirm\?\S+", msg.get_content()).group(0)
        assert session.get(link).status_code == 200
        smtp.messages.clear()
    return data


def run(session, url, jobname, data):
    r = session.post(f"{url}/rest/{jobname}", data={**data, "PHASE": "RUN"}, allow_redirects=False)
    assert r.status_code == 303, r.text
    job_url = r.headers["Location"]
    wait_final(session, job_url)
    return job_url


def test_a_job_that_asked_for_it_sends_its_owner_an_email_when_it_ends(srv, smtp):
    alice = srv.as_["alice"]
    assert set_email(alice, srv.url, "alice@example.org", smtp)["email"] == "alice@example.org"
    quiet = run(alice, srv.url, "dummy", {"text": "no mail for me"})
    job_url = run(alice, srv.url, "dummy", {"text": "hello", "NOTIFY": "email", "RUNID": "night run"})
    job_id = job_url.rsplit("/", 1)[1]
    (rcpt, msg), = wait_for(lambda: smtp.messages, what="the e-mail")
    assert rcpt == ["alice@example.org"]
    assert msg["From"] == "opus@uws.example.org" and msg["To"] == "alice@example.org"
    assert msg["Subject"] == f"OPUS: job dummy {job_id} (night run) COMPLETED"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert f"{srv.url}/web/jobs/dummy/{job_id}" in body
    assert f"{srv.url}/rest/dummy/{job_id}/results/output" in body
    assert quiet.rsplit("/", 1)[1] not in body
    assert set(smtp.logins) == {(b"opus", b"s3cret")}  # SMTP_USER/SMTP_PASSWORD were used (each message)
    # The control parameter is kept with the job (and can be read back), not given to the script.
    params = alice.get(job_url + "/parameters", headers={"Accept": "application/json"}).json()
    assert {"id": "NOTIFY", "value": "email", "byReference": False} in params
    srv.notifications.sender.flush()
    assert len(smtp.messages) == 1  # sent once


def test_an_error_is_told_with_its_message_and_a_user_without_address_gets_nothing(srv, smtp):
    alice, bob = srv.as_["alice"], srv.as_["bob"]
    set_email(alice, srv.url, "alice@example.org", smtp)
    run(bob, srv.url, "dummy", {"text": "x", "NOTIFY": "email"})  # bob gave no address
    job_url = run(alice, srv.url, "fail", {"message": "boom", "NOTIFY": "email"})
    (rcpt, msg), = wait_for(lambda: smtp.messages, what="the e-mail")
    assert rcpt == ["alice@example.org"] and msg["Subject"].endswith(" ERROR")
    assert job_url.rsplit("/", 1)[1] in msg["Subject"] and "Error:" in msg.get_content()


def test_the_daily_digest_gathers_the_days_jobs_in_one_email(srv, smtp):
    alice = srv.as_["alice"]
    set_email(alice, srv.url, "alice@example.org", smtp)
    ids = [run(alice, srv.url, "dummy", {"text": str(i), "NOTIFY": "digest"}).rsplit("/", 1)[1] for i in range(2)]
    sender = srv.notifications.sender
    # written just after the job ends (the client may see COMPLETED first)
    wait_for(lambda: len(srv.notifications.outbox.pending()) == 2, what="two digest lines")
    sender.flush()
    assert smtp.messages == []  # not before the digest hour has passed
    assert sender.flush(now=utcnow() + timedelta(days=1)) == 1
    (rcpt, msg), = smtp.messages
    assert rcpt == ["alice@example.org"] and msg["Subject"] == "OPUS: your daily digest (2 jobs)"
    assert all(job_id in msg.get_content() for job_id in ids)
    assert sender.flush(now=utcnow() + timedelta(days=2)) == 0 and len(smtp.messages) == 1


def test_two_senders_send_each_message_once(srv, smtp):
    from opus.events.mail import Outbox
    store = srv.notifications.outbox
    for i in range(20):
        store.add("mail", f"user{i}@example.org", f"message {i}", "hello\n")
    senders = [Outbox(srv.settings, store) for _ in range(3)]
    threads = [threading.Thread(target=s.flush) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    srv.notifications.sender.flush()
    wait_for(lambda: len(smtp.messages) >= 20, what="20 messages")
    assert sorted(m["Subject"] for _, m in smtp.messages) == sorted(f"message {i}" for i in range(20))


def test_admins_are_told_of_a_proposed_definition(srv, smtp):
    from opus.auth.admin import UserAdmin
    UserAdmin(srv.services.users).add("chief", admin=True)
    srv.notifications.outbox.set_email(srv.services.users.get("chief").uid, "chief@example.org", confirmed=True)
    srv.notifications.definition_proposed("newdef", "alice", "ab" * 32)
    wait_for(lambda: len(smtp.messages) == 2, what="two e-mails")
    assert sorted(r[0] for r, _ in smtp.messages) == ["chief@example.org", "ops@example.org"]
    msg = smtp.messages[0][1]
    assert msg["Subject"] == "OPUS: job definition 'newdef' proposed by alice"
    assert f"{srv.url}/jdl/proposals/newdef" in msg.get_content()


def test_proposing_through_the_api_tells_the_admins(srv, smtp):
    r = srv.as_["root"].post(f"{srv.url}/jdl", json={"name": "mailme", "script": "true\n", "version": "1"})
    assert r.status_code == 201, r.text
    wait_for(lambda: smtp.messages, what="the e-mail")
    assert "mailme" in smtp.messages[0][1]["Subject"]


def test_notification_requests_are_checked(tmp_path):
    server = serve(tmp_path)  # no SMTP_HOST, no digest, no webhooks
    try:
        alice = server.as_["alice"]
        for data, words in (({"NOTIFY": "email"}, "sends no e-mail"), ({"NOTIFY": "digest"}, "no daily digest"),
                            ({"NOTIFY": "sms"}, "email, digest or none"),
                            ({"WEBHOOK": "https://hooks.example.org/x"}, "calls no webhooks")):
            r = alice.post(f"{server.url}/rest/dummy", data={"text": "x", **data}, allow_redirects=False)
            assert r.status_code == 400 and words in r.text, (data, r.status_code, r.text)
        for bad in ({"email": "not an address"}, {"email": 3}, {"phone": "1"}, ["x"]):
            r = alice.put(f"{server.url}/notifications", json=bad)
            assert r.status_code == 400, (bad, r.text)
        assert alice.get(f"{server.url}/notifications").json()["mail"] is False
        assert server.as_["anonymous"].get(f"{server.url}/notifications").status_code == 401
    finally:
        server.notifications.stop()
        server.stop()


class Hooks(BaseHTTPRequestHandler):
    received: list = []  # noqa: RUF012 - the handler's instances are made by http.server

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hooks.received.append((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hooks():
    Hooks.received = []
    httpd = HTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.server_port
    httpd.shutdown()
    httpd.server_close()


def test_a_webhook_gets_each_phase_change_of_its_job(tmp_path, hooks):
    server = serve(tmp_path, WEBHOOKS=True, INPUT_URL_HOSTS=("127.0.0.1",))
    try:
        alice = server.as_["alice"]
        job_url = run(alice, server.url, "dummy", {"text": "x", "WEBHOOK": f"http://127.0.0.1:{hooks}/hook?k=1"})
        wait_for(lambda: len(Hooks.received) >= 2, what="two webhook calls")
        phases = [body["phase"] for _path, _type, body in Hooks.received]
        assert phases == ["EXECUTING", "COMPLETED"]
        path, ctype, body = Hooks.received[-1]
        assert path == "/hook?k=1" and ctype == "application/json"
        assert body["jobId"] == job_url.rsplit("/", 1)[1] and body["jobName"] == "dummy"
        # another host than INPUT_URL_HOSTS allows: refused at submission, like a URL input
        r = alice.post(f"{server.url}/rest/dummy", data={"text": "x", "WEBHOOK": "http://10.1.2.3/hook"},
                       allow_redirects=False)
        assert r.status_code == 400 and "10.1.2.3" in r.text
        r = alice.post(f"{server.url}/rest/dummy", data={"text": "x", "WEBHOOK": "file:///etc/passwd"},
                       allow_redirects=False)
        assert r.status_code == 400
    finally:
        server.notifications.stop()
        server.stop()


def test_a_webhook_to_a_name_of_a_private_address_is_never_called(tmp_path, hooks):
    """With INPUT_URL_HOSTS = ("*",) a name passes at submission; its addresses are checked when it is
    called, and the connection goes only to a checked address: localhost (loopback) is refused."""
    server = serve(tmp_path, WEBHOOKS=True, INPUT_URL_HOSTS=("*",))
    try:
        alice = server.as_["alice"]
        r = alice.post(f"{server.url}/rest/dummy", data={"text": "x", "WEBHOOK": f"http://127.0.0.1:{hooks}/"},
                       allow_redirects=False)
        assert r.status_code == 400  # a literal private address needs to be listed
        run(alice, server.url, "dummy", {"text": "x", "WEBHOOK": f"http://localhost:{hooks}/"})
        from opus.storage.tables import outbox as table

        def tried():
            server.notifications.sender.flush()
            with server.services.store.engine.connect() as conn:
                errors = [row.last_error for row in conn.execute(table.select())]
            return errors if len(errors) == 2 and all(errors) else None

        errors = wait_for(tried, what="both calls tried")  # EXECUTING and COMPLETED
        assert all("non-public address" in e for e in errors), errors
        assert Hooks.received == []
    finally:
        server.notifications.stop()
        server.stop()
