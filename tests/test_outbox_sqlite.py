"""The outbox claims messages safely on SQLite while another writer holds the database.

A claim reads the due messages, then marks them.  In a deferred transaction the mark must upgrade a
read snapshot to a write: if another writer committed meanwhile, SQLite refuses at once ("database is
locked", the busy timeout does not apply), which failed a webhook test under load.  The claim takes
the write lock at BEGIN and waits its turn instead.
"""

from __future__ import annotations

import threading
import time

from opus.storage import create_engine_for
from opus.storage.database import upgrade_schema
from opus.storage.outbox import OutboxStore
from opus.timeutil import utcnow


def test_a_claim_waits_for_another_writer_instead_of_failing(tmp_path):
    engine = create_engine_for(f"sqlite:///{tmp_path / 'opus.sqlite'}")
    upgrade_schema(engine)
    store = OutboxStore(engine)
    store.add("mail", "alice@example.org", "subject", "body")
    other = engine.raw_connection()
    cursor = other.cursor()
    cursor.execute("BEGIN IMMEDIATE")  # another writer holds the write lock...
    cursor.execute("INSERT INTO outbox (kind, recipient, subject, body, created, next_try, attempts) "
                   "SELECT kind, recipient, subject, body, created, next_try, attempts FROM outbox")
    claimed: list[object] = []

    def claim() -> None:
        try:
            claimed.append(store.claim(("mail",), utcnow()))
        except Exception as exc:  # noqa: BLE001 - the failure is what is tested
            claimed.append(exc)

    thread = threading.Thread(target=claim)
    thread.start()
    time.sleep(0.5)  # ...while the claim starts; then it commits
    cursor.execute("COMMIT")
    other.close()
    thread.join(60)
    assert len(claimed) == 1 and isinstance(claimed[0], list), claimed
    assert len(claimed[0]) == 2  # both messages, the one committed meanwhile too
    engine.dispose()
