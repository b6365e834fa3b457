"""The server the fuzz test (tests/test_fuzz.py) drives, its job pool, and the tally of what it saw."""

from __future__ import annotations

import collections
import logging
import os
import shutil
from dataclasses import dataclass, field

from conftest import LiveServer, make_settings
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from opus.errors import NotFound
from opus.settings import REPO_ROOT
from opus.storage.userstore import UserStore
from opus.auth.admin import UserAdmin
FAST_JOBS = ("dummy", "fail", "copy")
ADMIN = "fuzzadmin"
#: Examples (requests) per random round; with the edges, the total must reach MIN_REQUESTS.
SCALE = float(os.environ.get("OPUS_FUZZ_SCALE", "1"))
STATELESS_EXAMPLES = int(700 * SCALE)
STATEFUL_REQUESTS = int(700 * SCALE)
STATEFUL_EXAMPLES = int(60 * SCALE)
STATEFUL_STEPS = 12
RAW_EXAMPLES = int(700 * SCALE)
MIN_REQUESTS = 2000
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]


def fuzz_settings(max_examples: int, **extra) -> settings:
    options = {"max_examples": max_examples, "derandomize": True, "database": None, "deadline": None,
               "phases": [Phase.generate], "suppress_health_check": list(HealthCheck), "print_blob": False}
    return settings(**{**options, **extra})


# ---- the server under test and what it saw -----------------------------------------------------------------
class ErrorLog(logging.Handler):
    """Keeps the server's ERROR records: the 500 handler and the background threads log tracebacks."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []
        self.exceptions: list[str] = []  # records with a traceback
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record):
        text = self.format(record)
        self.records.append(text)
        if record.exc_info:
            self.exceptions.append(text)


@dataclass
class Tally:
    sent: collections.Counter = field(default_factory=collections.Counter)  # per round
    statuses: collections.Counter = field(default_factory=collections.Counter)
    server_errors: list[tuple[str, str]] = field(default_factory=list)  # (request and answer, server log)
    nonconforming: dict[str, str] = field(default_factory=dict)  # one example per kind of failure
    no_answer: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


class FuzzServer:
    def __init__(self, tmp_path, database_url: str | None = None):
        jdl = tmp_path / "jdl"
        jdl.mkdir()
        for name in FAST_JOBS:
            shutil.copy(REPO_ROOT / "jdl" / f"{name}.json", jdl / f"{name}.json")
        # Small limits, so that 413 is reachable; WAIT blocks at most 1 s.
        # On PostgreSQL too: SQLite stores what PostgreSQL refuses (a NUL was a 500 there only).
        self.live = LiveServer(make_settings(tmp_path, JDL_DIR=str(jdl), MAX_WAIT=1, MAX_BODY_SIZE=64 * 1024,
                                             MAX_UPLOAD_SIZE=256 * 1024, MAX_PARAMETER_VALUE=20_000,
                                             DATABASE_URL=database_url))
        self.url = self.live.url
        self.settings = self.live.settings
        self.admin = UserAdmin(UserStore(self.live.services.store.engine))
        _, self.token = self.admin.add(ADMIN, admin=True)
        self.errors = ErrorLog()
        logging.getLogger("opus").addHandler(self.errors)
        self.tally = Tally()
        self._seen = 0
        self.pool = self._make_pool()

    def stop(self):
        logging.getLogger("opus").removeHandler(self.errors)
        self.live.stop()

    def entity_ids(self) -> list[str]:
        """Entities of the pool's finished jobs (their results), for the /store paths."""
        found = self.live.services.entities.generated_by([job_id for _, job_id in self.pool])
        return [e.entity_id for e in found] or ["0" * 16]

    @property
    def admin_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def _make_pool(self) -> list[tuple[str, str]]:
        """Real jobs in several phases, for the fuzz to aim at."""
        live = self.live
        ids = [live.create("dummy"), live.create("fail", {"status": "7"}),
               live.create("copy", files={"infile": ("x.fits", b"SIMPLE  =    T")})]
        done = [live.create("dummy", run=True), live.create("fail", run=True)]
        for url in done:
            live.wait_final(url)
        return [tuple(url.rsplit("/", 2)[1:]) for url in ids + done]

    def repair_admin(self):
        """The fuzz may rotate, disable, demote or delete its own admin: put it back."""
        try:
            self.admin.get(ADMIN)
        except NotFound:
            _, self.token = self.admin.add(ADMIN, admin=True)
            return
        self.admin.update(ADMIN, enabled=True, admin=True)
        self.token = self.admin.new_token(ADMIN)

    def record(self, round_name: str, what: str, status: int | None, body: bytes | str = b""):
        """Count one request; keep a 5xx with the tracebacks the server logged since the previous one."""
        self.tally.sent[round_name] += 1
        self.tally.statuses[status] += 1
        new_records, self._seen = self.errors.records[self._seen:], len(self.errors.records)
        if status is None:
            self.tally.no_answer.append(what)
        elif status >= 500:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            log = "\n".join(r for r in new_records if "unhandled error" in r) or "(nothing logged)"
            self.tally.server_errors.append((f"[{round_name}] {what}\n  -> {status} {text[:300]!r}", log))
