"""`opus migrate`: an installation of the original OPUS (built by tests/original_site.py) moved into a
fresh OPUS, then read through HTTP: every job, its results, its provenance; every definition run.

Issue 16, points 10 and 11 (docs/migration.md, "Moving a site: opus migrate").
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from conftest import ApiServer, make_settings, pg_url_or_skip
from helpers import wait_final
from original_site import JOBS, LONG_ID, build, build_on_postgresql

from opus.cli.main import main


def _settings(tmp_path: Path, database_url: str | None = None) -> dict[str, str]:
    values = {"DATA_DIR": str(tmp_path / "var"), "JDL_DIR": str(tmp_path / "jdl")}
    return {**values, "DATABASE_URL": database_url} if database_url else values


def _migrate(tmp_path: Path, capsys, *extra: str, database_url: str | None = None) -> tuple[int, str, str]:
    path = tmp_path / "opus_settings.py"
    path.write_text("".join(f"{k} = {v!r}\n" for k, v in _settings(tmp_path, database_url).items()), encoding="utf-8")
    code = main(["--settings", str(path), "migrate", *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def original(tmp_path):
    return build(tmp_path / "original")


def _writer(files: list[str]):
    def behaviour(run):
        for name in files:
            (run.work / name).write_text(f"{run.job_id}: {json.dumps(run.values, sort_keys=True)}\n")
        return 0
    return behaviour


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(tmp_path, original, capsys):
    # --from may also name the original's VAR_PATH (its settings then take the original's defaults).
    code, out, _ = _migrate(tmp_path, capsys, "--from", str(original.parent / "var"), "--dry-run")
    assert code == 0, out
    assert "dry run: nothing was written" in out
    for job_id in JOBS:
        assert f"/{job_id} (" in out
    assert "user alice@example.org" in out and "definition test_activity_1 version 0.9" in out
    assert "Summary: would import 7 definition files, 5 jobs, 3 users" in out
    assert not (tmp_path / "var").exists() and not (tmp_path / "jdl").exists()


def test_errors_are_one_line(tmp_path, capsys):
    code, out, err = _migrate(tmp_path, capsys, "--from", str(tmp_path / "nowhere"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("opus: --from ") and "no such file or directory" in err
    (tmp_path / "db").mkdir()
    code, _, err = _migrate(tmp_path, capsys, "--from", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "database" in err and "does not exist" in err


def test_a_migrated_site_answers_through_http(tmp_path, original, capsys, database_url):
    code, out, _ = _migrate(tmp_path, capsys, "--from", str(original), database_url=database_url)
    assert code == 0, out
    assert "Summary: imported 7 definition files, 5 jobs, 3 users" in out
    assert f"job {LONG_ID!r}: its id does not fit" in out and "draft_vot.xml: a proposal" in out
    assert "was EXECUTING in the original; imported as ERROR" in out
    # A second run changes nothing, and says so.
    code, again, _ = _migrate(tmp_path, capsys, "--from", str(original), database_url=database_url)
    assert code == 0 and "imported nothing new; 15 already there; 2 not imported" in again
    if database_url.startswith("postgresql"):
        # A bulk load: analysed at once, not left to autovacuum's next round (the job list's plan).
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn:
                analysed = dict(conn.execute(text(
                    "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE schemaname = current_schema() AND relname IN ('jobs', 'parameters', 'users')")).all())
        finally:
            engine.dispose()
        assert analysed == {"jobs": True, "parameters": True, "users": True}

    tokens_file = next((tmp_path / "var" / "migration").glob("tokens-*.txt"))
    assert tokens_file.stat().st_mode & 0o077 == 0
    tokens = dict(line.split("\t") for line in tokens_file.read_text().splitlines())
    files = {name: [g["file"] for g in json.loads((tmp_path / "jdl" / f"{name}.json").read_text())
                    ["generated"].values()] for name in ("test_activity_1", "test_activity_2", "ctbin")}
    server = ApiServer(make_settings(tmp_path, **_settings(tmp_path, database_url)),
                       behaviours={name: _writer(f) for name, f in files.items()})
    try:
        _check_site(server, tokens)
    finally:
        server.stop()


def _check_site(server, tokens: dict[str, str]) -> None:
    admin, alice, bob = (server.session() for _ in range(3))
    admin.auth, alice.auth, bob.auth = ("opus-admin", tokens["opus-admin"]), \
        ("alice@example.org", tokens["alice@example.org"]), ("bob", tokens["bob"])
    users = {u["name"]: u for u in admin.get(f"{server.url}/admin/users").json()["users"]}
    assert "admin" in users["opus-admin"]["roles"]
    assert users["alice@example.org"]["jobDefinitions"] == ["test_activity_1", "test_activity_2"]
    # The web client's job_definition role is the editor role; its accounts were named by e-mail.
    assert users["alice@example.org"]["roles"] == ["editor", "user"] and "editor" not in users["bob"]["roles"]
    assert users["alice@example.org"]["email"] == "alice@example.org" and users["bob"]["email"] is None
    assert users["bob"]["enabled"] is False and users["bob"]["jobDefinitions"] == ["test_activity_2"]
    assert bob.get(f"{server.url}/rest/test_activity_2").status_code == 401  # disabled, as in the original

    for job_id, (name, phase, owner, params, results, error) in JOBS.items():
        url = f"{server.url}/rest/{name}/{job_id}"
        assert admin.get(f"{url}/phase").text == ("ERROR" if phase == "EXECUTING" else phase)
        assert admin.get(f"{url}/owner").text == ("" if owner == "anonymous" else owner)
        assert admin.get(f"{url}/parameters/text").text == params["text"]
        for rname, (_entity, _file, content) in results.items():
            assert admin.get(f"{url}/results/{rname}").text == content
        if phase in ("COMPLETED", "ERROR"):
            assert admin.get(f"{url}/stdout").text == f"job {job_id} says hello\n"
        if error:
            assert error in admin.get(url).text
    # Owners keep their jobs: alice reads hers, others do not.
    assert alice.get(f"{server.url}/rest/test_activity_1/a1b2c3/results/output").text == "Hello from 2019\n"
    assert server.session().get(f"{server.url}/rest/test_activity_1/a1b2c3").status_code in (403, 404)
    assert server.session().get(f"{server.url}/rest/test_activity_1/9a9a9a/phase").text == "PENDING"
    assert admin.get(f"{server.url}/rest/test_activity_2/0c0ffe/parameters/input").text == "bob's own text\n"
    # Provenance: d4e5f6 used a1b2c3's output, so two steps back reach a1b2c3.
    prov = alice.get(f"{server.url}/rest/test_activity_2/d4e5f6/provenance",
                     params={"format": "json", "DEPTH": 2}).text
    for node in ("opus_job:test_activity_1/a1b2c3", "opus_store:e1e1e1", "opus_store:f7f7f7"):
        assert f'"{node}"' in prov, node
    # The version of its definition a job ran with: the one live when it was created (0.9 went live on
    # 2019-05-02, the job was created on 2019-05-03; version 1 is the live file, written later).
    assert "<opus:jobDefinitionVersion>0.9<" in admin.get(f"{server.url}/rest/test_activity_1/a1b2c3").text
    # A job that was PENDING in the original runs here.
    pending = f"{server.url}/rest/test_activity_1/9a9a9a"
    assert server.session().post(f"{pending}/phase", data={"PHASE": "RUN"}, allow_redirects=False).status_code == 303
    assert wait_final(admin, pending) == "COMPLETED"
    assert "not run yet" in admin.get(f"{pending}/results/output").text
    # Every version of every definition, and every definition runs with its example values.
    versions = [v["version"] for v in admin.get(f"{server.url}/jdl/test_activity_1/versions").json()["versions"]]
    assert versions == ["0.9", "1"]
    assert '"Hello"' in admin.get(f"{server.url}/jdl/test_activity_1", params={"format": "json",
                                                                               "version": "0.9"}).text
    for name in ("test_activity_1", "test_activity_2", "ctbin"):
        r = admin.post(f"{server.url}/rest/{name}", data={"PHASE": "RUN"}, allow_redirects=False)
        assert r.status_code == 303, (name, r.text)
        assert wait_final(admin, r.headers["Location"]) == "COMPLETED", (name, admin.get(r.headers["Location"]).text)


def test_old_store_links_resolve(tmp_path, original, capsys):
    assert _migrate(tmp_path, capsys, "--from", str(original))[0] == 0
    tokens_file = next((tmp_path / "var" / "migration").glob("tokens-*.txt"))
    tokens = dict(line.split("\t") for line in tokens_file.read_text().splitlines())
    server = ApiServer(make_settings(tmp_path, **_settings(tmp_path)))
    try:
        alice = server.session()
        alice.auth = ("alice@example.org", tokens["alice@example.org"])
        r = alice.get(f"{server.url}/store", params={"ID": "e1e1e1"})
        assert r.status_code == 200 and r.text == "Hello from 2019\n"
        assert alice.get(f"{server.url}/provsap", params={"ID": "e1e1e1", "DIRECTION": "FORTH"}).status_code == 200
    finally:
        server.stop()


@pytest.mark.postgres
def test_an_original_on_postgresql_comes_across(tmp_path, capsys, monkeypatch):
    settings = build_on_postgresql(tmp_path / "original", pg_url_or_skip())
    assert not (tmp_path / "original" / "var" / "db" / "job_database.db").exists()
    # The original wrote naive local times: they are read in the time zone opus migrate runs in.
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        code, out, _ = _migrate(tmp_path, capsys, "--from", str(settings))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert code == 0, out
    assert "Summary: imported 7 definition files, 5 jobs, 3 users" in out, out
    server = ApiServer(make_settings(tmp_path, **_settings(tmp_path)))
    try:
        assert server.session().get(f"{server.url}/rest/test_activity_1/9a9a9a/parameters/text").text == "not run yet"
        tokens_file = next((tmp_path / "var" / "migration").glob("tokens-*.txt"))
        tokens = dict(line.split("\t") for line in tokens_file.read_text().splitlines())
        alice = server.session()
        alice.auth = ("alice@example.org", tokens["alice@example.org"])
        url = f"{server.url}/rest/test_activity_2/d4e5f6"
        assert alice.get(f"{url}/results/output").text == "Hello from 2019\nagain\n"
        assert alice.get(f"{url}/parameters/input").text == "Hello from 2019\n"
        assert "<uws:startTime>2019-05-03T07:00:01.000Z<" in alice.get(url).text  # 09:00:01 CEST
    finally:
        server.stop()
