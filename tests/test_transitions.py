"""The UWS transition table (``opus.uws.TRANSITIONS``) is the law, in one place.

* Through HTTP (the app in-process, a manager that never runs anything), every (phase, action) pair:
  RUN, ABORT, DELETE, POST parameters, EXECUTIONDURATION, DESTRUCTION, and a wrapper's reports.  The
  expected outcome is derived from the named sets of ``opus.uws``, never written per phase, and every
  phase change observed must be in the table.
* Through the JobStore: ``set_phase`` takes its compare-and-set sources from the table and refuses
  sources the table does not allow.
* An AST scan of ``opus/``: no module but ``opus/uws.py`` spells a set of phases inline (a second
  copy of a rule is how the code and the table drift apart).
"""

from __future__ import annotations

import ast
import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import webtest
from conftest import make_settings

import opus.service.root as root_module
from opus.auth.identity import job_token
from opus.managers.base import Manager, ReportSink
from opus.server.app import create_app
from opus.storage import JobStore, create_engine_for, upgrade_schema
from opus.uws import (ABORTABLE, EDITABLE, ENDABLE, ENDED, FINAL, NAMED_MOVES, REPORTABLE, RUNNABLE, RUNNING,
                      STARTABLE, TRANSITIONS, Job, Phase)

OPUS = Path(__file__).resolve().parent.parent / "opus"


class StillManager(Manager):
    """A manager that runs nothing: a job stays in the phase the test puts it in."""

    name = "still"

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def start(self, report: ReportSink) -> None:
        pass

    def wake(self) -> None:
        pass

    def abort(self, job_id: str, manager_id: str | None, then: Callable[[], None] | None = None) -> None:
        if then is not None:
            then()

    def is_alive(self) -> bool:
        return True


@dataclass
class World:
    app: webtest.TestApp
    store: JobStore
    settings: Any


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("transitions"))
    upgrade_schema(create_engine_for(settings.database_url))
    root = root_module.Root.build(settings, manager_factory=StillManager)
    app = create_app(settings, root)
    yield World(webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"}), root.store, settings)
    root.stop()
    root.store.engine.dispose()


# ---- putting a job in a phase -------------------------------------------------------------------------
#: How a new (PENDING) job reaches each phase, one table transition at a time (ARCHIVED: then archived).
PATHS: dict[Phase, list[Phase]] = {
    Phase.PENDING: [],
    Phase.QUEUED: [Phase.QUEUED],
    Phase.EXECUTING: [Phase.QUEUED, Phase.EXECUTING],
    Phase.COMPLETED: [Phase.QUEUED, Phase.EXECUTING, Phase.COMPLETED],
    Phase.ERROR: [Phase.QUEUED, Phase.ERROR],
    Phase.ABORTED: [Phase.ABORTED],
    Phase.UNKNOWN: [Phase.QUEUED, Phase.UNKNOWN],
    Phase.HELD: [Phase.HELD],
    Phase.SUSPENDED: [Phase.QUEUED, Phase.EXECUTING, Phase.SUSPENDED],
    Phase.ARCHIVED: [Phase.QUEUED, Phase.EXECUTING, Phase.COMPLETED, Phase.ARCHIVED],
}


def job_in(world: World, phase: Phase) -> str:
    """A new job of "dummy", moved to ``phase`` through the store; its URL path."""
    r = world.app.post("/rest/dummy", {"text": "one"}, status=303)
    path = "/rest/dummy/" + r.headers["Location"].rsplit("/", 1)[1]
    job_id = path.rsplit("/", 1)[1]
    for step in PATHS[phase]:
        if step is Phase.ARCHIVED:
            assert world.store.archive(job_id)
        else:
            assert world.store.set_phase(job_id, step), f"{step} from the table's sources"
    assert world.store.get_phase(job_id) is phase
    return path


# ---- the actions and what the named sets say they do ---------------------------------------------------
@dataclass
class Outcome:
    status: int
    phase: Phase | None          # None: the job is gone
    report: str | None = None    # a wrapper report's outcome ("applied", "already", "ignored")


def expected(action: str, phase: Phase) -> Outcome:
    if action == "RUN":
        if phase in RUNNING:
            return Outcome(303, phase)  # idempotent (CHECKLIST §6.2)
        return Outcome(303, Phase.QUEUED) if phase in RUNNABLE else Outcome(403, phase)
    if action == "ABORT":
        return Outcome(303, Phase.ABORTED) if phase in ABORTABLE else Outcome(403, phase)
    if action == "DELETE":
        return Outcome(303, None)
    if action == "parameters":
        return Outcome(303, phase) if phase is Phase.PENDING else Outcome(403, phase)
    if action == "EXECUTIONDURATION":
        return Outcome(303, phase) if phase in EDITABLE else Outcome(403, phase)
    if action == "DESTRUCTION":
        return Outcome(303, phase)
    target = Phase(action.split(":", 1)[1])
    if target not in REPORTABLE:
        return Outcome(400, phase)
    if phase is target:
        return Outcome(200, phase, "already")
    if phase in FINAL:
        return Outcome(200, phase, "ignored")
    # An end reported for a QUEUED job records the lost start first (QUEUED -> EXECUTING -> end).
    moves = phase in STARTABLE if target is Phase.EXECUTING else (phase in ENDABLE or phase is Phase.QUEUED)
    return Outcome(200, target, "applied") if moves else Outcome(200, phase, "ignored")


LATER = (datetime.now(timezone.utc) + timedelta(days=3)).replace(microsecond=0)


def act(world: World, path: str, action: str) -> tuple[int, str | None]:
    """Do ``action`` on the job at ``path`` over HTTP: (status, a report's outcome)."""
    app = world.app
    if action in ("RUN", "ABORT"):
        return app.post(path + "/phase", {"PHASE": action}, status="*").status_int, None
    if action == "DELETE":
        return app.delete(path, status="*").status_int, None
    if action == "parameters":
        return app.post(path + "/parameters", {"text": "two"}, status="*").status_int, None
    if action == "EXECUTIONDURATION":
        return app.post(path + "/executionduration", {"EXECUTIONDURATION": "123"}, status="*").status_int, None
    if action == "DESTRUCTION":
        value = LATER.strftime("%Y-%m-%dT%H:%M:%SZ")
        return app.post(path + "/destruction", {"DESTRUCTION": value}, status="*").status_int, None
    job_id = path.rsplit("/", 1)[1]
    report = {"job_id": job_id, "token": job_token(world.settings, job_id), "phase": action.split(":", 1)[1]}
    r = app.post_json("/handler/job_event", report, status="*")
    return r.status_int, (r.json.get("outcome") if r.status_int == 200 else None)


ACTIONS = ["RUN", "ABORT", "DELETE", "parameters", "EXECUTIONDURATION", "DESTRUCTION",
           *(f"report:{p.value}" for p in (Phase.EXECUTING, Phase.COMPLETED, Phase.ERROR, Phase.ABORTED)),
           "report:QUEUED", "report:ARCHIVED"]


def in_table(before: Phase, after: Phase) -> bool:
    """Whether the table allows ``before`` -> ``after``, directly or through the start a report of an
    end records for a QUEUED job."""
    if before in TRANSITIONS[after]:
        return True
    return (before is Phase.QUEUED and after in ENDED and before in TRANSITIONS[Phase.EXECUTING]
            and Phase.EXECUTING in TRANSITIONS[after])


@pytest.mark.parametrize("phase,action", list(itertools.product(Phase, ACTIONS)),
                         ids=lambda v: v.value if isinstance(v, Phase) else v)
def test_every_phase_and_action_follows_the_table(world: World, phase: Phase, action: str) -> None:
    path = job_in(world, phase)
    job_id = path.rsplit("/", 1)[1]
    before = world.store.get(job_id)
    assert before is not None
    want = expected(action, phase)
    status, report = act(world, path, action)
    after = world.store.get(job_id)
    got = Outcome(status, after.phase if after is not None else None, report)
    assert got == want, f"{action} on a {phase.value} job"
    if after is not None and after.phase is not phase:
        assert in_table(phase, after.phase), f"{phase.value} -> {after.phase.value} is not in TRANSITIONS"
    if after is None:
        assert world.app.get(path + "/phase", status="*").status_int == 404
    elif status == 303 and action == "parameters":
        assert after.parameter("text") is not None and after.parameter("text").value == "two"
    elif status == 303 and action == "EXECUTIONDURATION":
        assert after.execution_duration == 123
    elif status == 303 and action == "DESTRUCTION":
        assert after.destruction_time == LATER
    elif status != 303 and after is not None:  # refused: nothing changed
        assert (after.execution_duration, after.parameters, after.destruction_time) == \
            (before.execution_duration, before.parameters, before.destruction_time)


# ---- the store takes its sources from the table ---------------------------------------------------------
def _store_job(store: JobStore, phase: Phase) -> str:
    job_id = secrets.token_hex(8)
    store.create(Job(job_id=job_id, jobname="dummy", phase=phase, creation_time=datetime.now(timezone.utc),
                     execution_duration=60, destruction_time=None))
    return job_id


@pytest.mark.parametrize("target", list(Phase), ids=str)
def test_set_phase_moves_exactly_from_the_table_sources(world: World, target: Phase) -> None:
    for source in Phase:
        job_id = _store_job(world.store, source)
        moved = world.store.set_phase(job_id, target)
        assert moved is (source in TRANSITIONS[target]), f"{source.value} -> {target.value}"
        assert world.store.get_phase(job_id) is (target if moved else source)


def test_sources_beyond_the_table_are_a_programming_error(world: World) -> None:
    job_id = _store_job(world.store, Phase.PENDING)
    for call in (lambda: world.store.set_phase(job_id, Phase.EXECUTING, [Phase.PENDING]),
                 lambda: world.store.complete(job_id, Phase.COMPLETED, [Phase.PENDING], []),
                 lambda: world.store.set_phase(job_id, Phase.PENDING, [Phase.QUEUED])):
        with pytest.raises(ValueError, match="not in the UWS transition table"):
            call()
    assert world.store.get_phase(job_id) is Phase.PENDING
    assert world.store.set_phase(job_id, Phase.QUEUED, RUNNABLE)  # a named subset is fine


def test_named_sets_are_within_the_table() -> None:
    for name, sources, targets in NAMED_MOVES:
        for target in targets:
            assert sources - {target} <= TRANSITIONS[target], (name, target)


# ---- no inline phase sets outside opus/uws.py ---------------------------------------------------------
def _is_phase(node: ast.expr) -> bool:
    """``Phase.X`` or ``Phase.X.value``."""
    if isinstance(node, ast.Attribute) and node.attr == "value":
        node = node.value
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Phase"


def inline_phase_sets(source: str) -> list[int]:
    """Lines of tuple, list or set literals with two or more phases (frozenset({...}) is a set literal)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and sum(map(_is_phase, node.elts)) >= 2:
            found.append(node.lineno)
    return found


def test_the_scan_finds_inline_phase_sets() -> None:
    assert inline_phase_sets("if p in (Phase.QUEUED, Phase.EXECUTING): pass") == [1]
    assert inline_phase_sets("x = frozenset({Phase.PENDING, Phase.HELD})") == [1]
    assert inline_phase_sets("x = [Phase.COMPLETED.value, Phase.ERROR.value]") == [1]
    assert inline_phase_sets("x = [Phase.QUEUED]\ny = (Phase.QUEUED, 'QUEUED')") == []


def test_no_module_but_uws_spells_a_phase_set() -> None:
    offenders = []
    for path in sorted(OPUS.rglob("*.py")):
        if path == OPUS / "uws.py" or "migrations" in path.parts:
            continue
        offenders += [f"{path.relative_to(OPUS.parent)}:{line}"
                      for line in inline_phase_sets(path.read_text(encoding="utf-8"))]
    assert not offenders, ("inline phase sets (name them in opus/uws.py and check them against "
                           "TRANSITIONS): " + ", ".join(offenders))
