"""Notifications go only to a confirmed address (opus.service.addresses): an address given by its user
is used once the user opened the link mailed to it, so nobody can make OPUS mail somebody else's
address.  Against the real SMTP server of tests/test_notifications.py."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from helpers import wait_for
from test_notifications import Inbox, run, serve, smtp, srv  # noqa: F401  (fixtures)

from opus.auth.admin import UserAdmin
from opus.service import addresses
from opus.storage.outbox import OutboxStore


def _link(smtp_inbox) -> str:
    (rcpt, msg), = wait_for(lambda: smtp_inbox.messages, what="the confirmation e-mail")
    assert msg["Subject"] == "OPUS: confirm your e-mail address"
    return re.search(r"https?://\S+/web/confirm\?\S+", msg.get_content()).group(0)


def test_an_unconfirmed_address_gets_only_its_confirmation_then_the_notifications(srv, smtp, caplog):  # noqa: F811
    alice = srv.as_["alice"]
    r = alice.put(f"{srv.url}/notifications", json={"email": "alice@example.org"}).json()
    assert r == {**r, "email": "alice@example.org", "emailConfirmed": False, "confirmationSent": True}
    link = _link(smtp)
    smtp.messages.clear()
    first = run(alice, srv.url, "dummy", {"text": "x", "NOTIFY": "email"}).rsplit("/", 1)[1]
    # The job's end is told just after the client can see it: wait for that decision.
    wait_for(lambda: f"job {first} asked for email but its owner has no confirmed e-mail address" in caplog.text,
             what="the job's notification to be skipped")
    srv.notifications.sender.flush()
    assert smtp.messages == []  # not confirmed: nothing sent there
    page = requests.get(link)  # anyone holding the link (the mailbox's owner): no sign-in needed
    assert page.status_code == 200 and "alice@example.org" in page.text and 'id="confirmed"' in page.text
    assert alice.get(f"{srv.url}/notifications").json()["emailConfirmed"] is True
    assert alice.get(f"{srv.url}/account").json()["emailVerified"] is True
    job = run(alice, srv.url, "dummy", {"text": "y", "NOTIFY": "email"})
    (rcpt, msg), = wait_for(lambda: smtp.messages, what="the job's e-mail")
    assert rcpt == ["alice@example.org"] and job.rsplit("/", 1)[1] in msg["Subject"]


def test_a_forged_expired_or_outdated_link_confirms_nothing(srv, smtp):  # noqa: F811
    alice = srv.as_["alice"]
    alice.put(f"{srv.url}/notifications", json={"email": "old@example.org"})
    link = _link(smtp)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    base = f"{srv.url}/web/confirm?"
    forged = requests.get(base + urlencode({**query, "email": "victim@example.org"}))
    assert forged.status_code == 400 and "not valid" in forged.text
    assert requests.get(base + urlencode({**query, "sig": "0" * 64})).status_code == 400
    assert requests.get(base + urlencode({"uid": query["uid"]})).status_code == 400
    uid = int(query["uid"])
    stale = addresses.confirmation_link(srv.settings, uid, "old@example.org", now_ts=0)  # expired in 1970
    assert requests.get(stale).status_code == 410
    # The address changed since the link was sent: the old link confirms nothing.
    alice.put(f"{srv.url}/notifications", json={"email": "new@example.org"})
    outdated = requests.get(link)
    assert outdated.status_code == 410 and "no longer" in outdated.text
    assert alice.get(f"{srv.url}/notifications").json() == {
        **alice.get(f"{srv.url}/notifications").json(), "email": "new@example.org", "emailConfirmed": False}


def test_confirmation_mails_cannot_flood_an_address(srv, smtp):  # noqa: F811
    alice = srv.as_["alice"]
    assert alice.put(f"{srv.url}/notifications", json={"email": "target@example.org"}).json()["confirmationSent"]
    for address in ("target@example.org", "other@example.org", "target@example.org"):
        assert alice.put(f"{srv.url}/notifications", json={"email": address}).json()["confirmationSent"] is False
    srv.notifications.sender.flush()
    assert len(smtp.messages) == 1  # one mail in VERIFY_INTERVAL, whatever the requests


def test_a_confirmed_address_given_again_stays_confirmed_and_admins_need_theirs_confirmed(srv, smtp):  # noqa: F811
    alice = srv.as_["alice"]
    alice.put(f"{srv.url}/notifications", json={"email": "alice@example.org"})
    assert requests.get(_link(smtp)).status_code == 200
    again = alice.put(f"{srv.url}/notifications", json={"email": "alice@example.org"}).json()
    assert again["emailConfirmed"] is True and again["confirmationSent"] is False
    outbox = OutboxStore(srv.services.store.engine)
    chief = UserAdmin(srv.services.users).add("chief", admin=True)[0]
    outbox.set_email(chief.stored_uid, "chief@example.org")  # given, not confirmed
    assert outbox.admin_emails() == []
    outbox.set_email(chief.stored_uid, "chief@example.org", confirmed=True)  # an admin's own act
    assert outbox.admin_emails() == ["chief@example.org"]


def test_registering_with_an_address_sends_its_confirmation(tmp_path, smtp):  # noqa: F811
    server = serve(tmp_path, REGISTRATION="open", SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port,
                   SMTP_USER="opus", SMTP_PASSWORD="s3cret", PASSWORD_HASH_TIME_COST=1,
                   PASSWORD_HASH_MEMORY_COST=1024)
    try:
        http = requests.Session()
        form = http.get(f"{server.url}/web/register")
        field = re.search(r'name="_csrf" value="([^"]+)"', form.text).group(1)
        r = http.post(f"{server.url}/web/register", data={
            "name": "dora", "password": "a long enough password", "password2": "a long enough password",
            "email": "dora@example.org", "_csrf": field}, allow_redirects=False)
        assert r.status_code == 303, r.text
        link = _link(smtp)
        assert server.services.users.get("dora").email_verified is False
        assert requests.get(link).status_code == 200
        assert server.services.users.get("dora").email_verified is True
    finally:
        server.notifications.stop()
        server.stop()



def test_an_upgrade_keeps_the_addresses_it_finds_confirmed(tmp_path):
    """Addresses stored before revision 0010 stay in use: an upgrade does not silence notifications."""
    from sqlalchemy import text

    from opus.storage.database import create_engine_for, upgrade_schema
    engine = create_engine_for(f"sqlite:///{tmp_path / 'old.sqlite'}")
    upgrade_schema(engine, "0009")
    with engine.begin() as conn:
        for name, email in (("ann", "ann@example.org"), ("ben", None)):
            conn.execute(text("INSERT INTO users (name, token_id, token_hash, is_admin, enabled, jobdefs, created, "
                              "is_editor, email, groups) VALUES (:n, :t, 'x', 0, 1, '*', '2026-01-01 00:00:00', 0, "
                              ":e, '')"), {"n": name, "t": f"{name}-token", "e": email})
    upgrade_schema(engine)
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT name, email_verified FROM users")).all())
    engine.dispose()
    assert found == {"ann": 1, "ben": 0}
