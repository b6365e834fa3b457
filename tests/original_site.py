"""Build a small installation of the original OPUS, as it left its files, for tests/test_migrate.py.

Original: https://github.com/ParisAstronomicalDataCentre/OPUS, commit
4487bcb3d4b244b23dbb19459d6f2de0ecffce6a (2025-10-03), MIT licence.  What is reproduced here is its
layout, not its code:

* ``settings_local.py`` in the shape of its ``settings_local.dist.py`` (only settings are set);
* ``<VAR_PATH>/db/job_database.db``: the tables of ``uws_server/storage.py``
  (``SQLAlchemyJobStorage`` with ``STORAGE_TYPE = 'SQLite'``: instants as VARCHAR(19)
  'YYYY-MM-DDTHH:MM:SS' local time, ``byref`` as VARCHAR(5) 'True'/'False'), written as the DDL its
  models create;
* ``<VAR_PATH>/db/flask_login.db``: the web client's accounts (``uws_client/uws_client.py``);
* ``<VAR_PATH>/jdl/``: ``votable/`` (live), ``votable/saved/<name>_v<version>_<time>_vot.xml``,
  ``wadl/``, ``scripts/``, ``scripts/saved/``, with the original's example definitions from
  tests/data/original/ (their origin is in its README);
* ``results/<job id>/``, ``uploads/<job id>/``, ``jobdata/<job id>/{stdout,stderr}.log`` and
  ``provenance.json``.

Run as a script to build one: ``python tests/original_site.py DIR``.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import sys
from datetime import datetime
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "original"
COMMIT = "4487bcb3d4b244b23dbb19459d6f2de0ecffce6a"

SCHEMA = """
CREATE TABLE jobs (jobid VARCHAR(80) NOT NULL PRIMARY KEY, jobname VARCHAR(255), phase VARCHAR(10),
  quote INTEGER, execution_duration INTEGER, error TEXT, creation_time VARCHAR(19), start_time VARCHAR(19),
  end_time VARCHAR(19), destruction_time VARCHAR(19), owner VARCHAR(64), owner_token VARCHAR(128),
  run_id VARCHAR(64), process_id BIGINT);
CREATE TABLE users (name VARCHAR(80) NOT NULL PRIMARY KEY, token VARCHAR(255), roles VARCHAR(255),
  active BOOLEAN, first_connection VARCHAR(19));
CREATE TABLE entities (entity_id VARCHAR(80) NOT NULL PRIMARY KEY, value VARCHAR(255), file_name VARCHAR(255),
  file_dir VARCHAR(255), hash VARCHAR(255), creation_time VARCHAR(19), content_type VARCHAR(255),
  access_url VARCHAR(255), owner VARCHAR(64), jobid VARCHAR(80) REFERENCES jobs (jobid),
  result_name VARCHAR(255), result_value VARCHAR(255), from_entity VARCHAR(80));
CREATE TABLE job_parameters (jobid VARCHAR(80) NOT NULL REFERENCES jobs (jobid), name VARCHAR(255) NOT NULL,
  value VARCHAR(255), byref VARCHAR(5), entity_id VARCHAR(255) REFERENCES entities (entity_id),
  PRIMARY KEY (jobid, name));
CREATE TABLE job_results (jobid VARCHAR(80) NOT NULL REFERENCES jobs (jobid), name VARCHAR(255) NOT NULL,
  url VARCHAR(255), content_type VARCHAR(64), entity_id VARCHAR(255) REFERENCES entities (entity_id),
  PRIMARY KEY (jobid, name));
CREATE TABLE used (entity_id VARCHAR(80) NOT NULL REFERENCES entities (entity_id),
  jobid VARCHAR(80) NOT NULL REFERENCES jobs (jobid), role VARCHAR(255), owner VARCHAR(64),
  PRIMARY KEY (entity_id, jobid));
"""
CLIENT_SCHEMA = """
CREATE TABLE role (id INTEGER PRIMARY KEY, name VARCHAR(80) UNIQUE, description VARCHAR(255));
CREATE TABLE user (id INTEGER PRIMARY KEY, email VARCHAR(255) UNIQUE, password VARCHAR(255), token VARCHAR(255),
  active BOOLEAN, fs_uniquifier VARCHAR(255) NOT NULL UNIQUE, confirmed_at DATETIME);
CREATE TABLE roles_users (user_id INTEGER REFERENCES user (id), role_id INTEGER REFERENCES role (id));
"""
BASE_URL = "http://old-opus.example.org/opus_server"

#: The jobs of the built site: what tests/test_migrate.py expects to find after the move.
JOBS = {
    # id: (definition, phase, owner, parameters, {result: (entity id, file, content)}, error)
    "a1b2c3": ("test_activity_1", "COMPLETED", "alice@example.org", {"text": "Hello from 2019"},
               {"output": ("e1e1e1", "output.txt", "Hello from 2019\n")}, None),
    "d4e5f6": ("test_activity_2", "COMPLETED", "alice@example.org", {"text": "again", "input": "file://output.txt"},
               {"output": ("f7f7f7", "output.txt", "Hello from 2019\nagain\n")}, None),
    "0c0ffe": ("test_activity_2", "ERROR", "bob", {"text": "x", "input": "file://mine.txt"}, {},
               "Job failed: cat: input: No such file"),
    "9a9a9a": ("test_activity_1", "PENDING", "anonymous", {"text": "not run yet"}, {}, None),
    "5e5e5e": ("test_activity_1", "EXECUTING", "anonymous", {"text": "was running"}, {}, None),
}
#: Not importable: an id this server cannot take (the original allowed uuids of 36 characters).
LONG_ID = "ea5caa9f-0a76-42f5-a1a7-43752df755f0"


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _jdl(var: Path) -> None:
    for sub in ("votable/saved", "votable/tmp", "wadl", "scripts/saved", "scripts/tmp"):
        (var / "jdl" / sub).mkdir(parents=True, exist_ok=True)
    for name in ("test_activity_1", "test_activity_2"):
        shutil.copy(DATA / "votable" / f"{name}_vot.xml", var / "jdl" / "votable" / f"{name}_vot.xml")
    # An earlier version, as the original's validation saved it: <name>_v<version>_<mtime>_vot.xml
    older = (DATA / "votable" / "test_activity_1_vot.xml").read_text(encoding="utf-8")
    older = older.replace('name="version" value="1"', 'name="version" value="0.9"')
    older = older.replace('value="Hello World"', 'value="Hello"')
    (var / "jdl" / "votable" / "saved" / "test_activity_1_v0.9_2019-05-02T10:00:00_vot.xml").write_text(
        older, encoding="utf-8")
    shutil.copy(DATA / "wadl" / "ctbin.wadl", var / "jdl" / "wadl" / "ctbin.wadl")
    shutil.copy(DATA / "scripts" / "ctbin.sh", var / "jdl" / "scripts" / "ctbin.sh")
    # A proposal nobody validated: reported, not imported.
    shutil.copy(DATA / "votable" / "test_activity_2_vot.xml", var / "jdl" / "votable" / "tmp" / "draft_vot.xml")


def _write(path: Path, content: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return content.encode()


def _job(db: sqlite3.Connection, var: Path, job_id: str, spec: tuple) -> None:
    name, phase, owner, params, results, error = spec
    ended = phase in ("COMPLETED", "ERROR")
    db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", (
        job_id, name, phase, 10, 20, error, "2019-05-03T09:00:00",
        "2019-05-03T09:00:01" if phase != "PENDING" else None,
        "2019-05-03T09:00:12" if ended else None, "2030-05-03T09:00:00", owner, "tok-" + owner, f"run-{job_id}", 4242))
    for pname, value in params.items():
        db.execute("INSERT INTO job_parameters VALUES (?,?,?,?,?)", (job_id, pname, value, "False", None))
    db.execute("INSERT INTO job_parameters VALUES (?,?,?,?,?)", (job_id, "runId", f"run-{job_id}", "False", None))
    for rname, (entity_id, file_name, content) in results.items():
        data = _write(var / "results" / job_id / file_name, content)
        db.execute("INSERT INTO entities VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (
            entity_id, None, file_name, str(var / "results" / job_id), _sha1(data), "2019-05-03T09:00:12",
            "text/plain", f"{BASE_URL}/store?ID={entity_id}", owner, job_id, rname, file_name, None))
        db.execute("INSERT INTO job_results VALUES (?,?,?,?,?)",
                   (job_id, rname, f"{BASE_URL}/store?ID={entity_id}", "text/plain", entity_id))
    if ended:
        _write(var / "jobdata" / job_id / "stdout.log", f"job {job_id} says hello\n")
        _write(var / "jobdata" / job_id / "stderr.log", "" if phase == "COMPLETED" else "cat: input: No such file\n")
        _write(var / "jobdata" / job_id / "provenance.json", "{}")
        for rname, ctype in (("stdout", "text/plain"), ("stderr", "text/plain"), ("provjson", "application/json")):
            db.execute("INSERT INTO job_results VALUES (?,?,?,?,?)",
                       (job_id, rname, f"{BASE_URL}//rest/{name}/{job_id}/{rname}", ctype, None))


def _inputs(db: sqlite3.Connection, var: Path) -> None:
    # d4e5f6 used a1b2c3's output (fetched from its /store URL, known by its hash): a provenance chain.
    data = (var / "results" / "a1b2c3" / "output.txt").read_bytes()
    (var / "uploads" / "d4e5f6").mkdir(parents=True)
    (var / "uploads" / "d4e5f6" / "output.txt").write_bytes(data)
    db.execute("INSERT INTO used VALUES (?,?,?,?)", ("e1e1e1", "d4e5f6", "input", "alice@example.org"))
    # 0c0ffe: bob uploaded a file of his own.
    upload = _write(var / "uploads" / "0c0ffe" / "mine.txt", "bob's own text\n")
    db.execute("INSERT INTO entities VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", (
        "b0b0b0", None, "mine.txt", str(var / "uploads" / "0c0ffe"), _sha1(upload), "2019-05-03T09:00:00",
        "text/plain", f"{BASE_URL}/store?ID=b0b0b0", "bob", None, None, None, None))
    db.execute("INSERT INTO used VALUES (?,?,?,?)", ("b0b0b0", "0c0ffe", "input", "bob"))


def build(root: Path) -> Path:
    """Build the installation in ``root``; returns its settings file (``settings_local.py``)."""
    var = root / "var"
    (var / "db").mkdir(parents=True)
    _jdl(var)
    settings = root / "settings_local.py"
    settings.write_text(
        f"# settings_local.py of an original OPUS (layout of settings_local.dist.py, commit {COMMIT})\n"
        f"BASE_URL = {BASE_URL!r}\nVAR_PATH = {str(var)!r}\nADMIN_NAME = 'opus-admin'\n"
        "ADMIN_TOKEN = 'secret-admin-token'\nCHECK_PERMISSIONS = True\nALLOW_ANONYMOUS = True\n"
        "STORAGE_TYPE = 'SQLite'\nJOB_ID_LENGTH = 6\n"
        "APP_TOKENS = {}\nTRUSTED_CLIENTS = {'127.0.0.1': 'localhost', BASE_IP: 'base_ip'}\n", encoding="utf-8")
    db = sqlite3.connect(var / "db" / "job_database.db")
    db.executescript(SCHEMA)
    db.executemany("INSERT INTO users VALUES (?,?,?,?,?)", [
        ("opus-admin", "secret-admin-token", "all", 1, "2018-01-01T00:00:00"),
        ("alice@example.org", "7d0b6c3e-alice", "test_activity_1,test_activity_2", 1, "2018-02-01T00:00:00"),
        ("bob", "1f0e-bob", "test_activity_2,retired_job", 0, "2018-03-01T00:00:00"),
    ])
    for job_id, spec in JOBS.items():
        _job(db, var, job_id, spec)
    _job(db, var, LONG_ID, ("test_activity_1", "COMPLETED", "alice@example.org", {"text": "long"}, {}, None))
    _inputs(db, var)
    db.commit()
    db.close()
    client = sqlite3.connect(var / "db" / "flask_login.db")
    client.executescript(CLIENT_SCHEMA)
    client.execute("INSERT INTO role VALUES (1, 'admin', ''), (2, 'user', ''), (3, 'job_definition', '')")
    client.execute("INSERT INTO user VALUES (1, 'opus-admin', '', '', 1, 'u1', NULL), "
                   "(2, 'alice@example.org', '', '', 1, 'u2', NULL)")
    client.execute("INSERT INTO roles_users VALUES (1, 1), (2, 2), (2, 3)")
    client.commit()
    client.close()
    return settings


def build_on_postgresql(root: Path, server_url: str, database: str = "opus_original") -> Path:
    """The same installation with its database on PostgreSQL (``STORAGE_TYPE = 'PostgreSQL'``: the
    original's models then use TIMESTAMP and BOOLEAN), in ``database`` of the server at ``server_url``
    (made anew); returns its settings file."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    settings = build(root)
    sqlite_file = root / "var" / "db" / "job_database.db"
    url = make_url(server_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    engine = create_engine(url.set(database=database))
    times = {"creation_time", "start_time", "end_time", "destruction_time", "first_connection"}
    source = sqlite3.connect(sqlite_file)
    source.row_factory = sqlite3.Row
    with engine.begin() as conn:
        conn.execute(text(SCHEMA.replace("VARCHAR(19)", "TIMESTAMP").replace("byref VARCHAR(5)", "byref BOOLEAN")))
        for table in ("jobs", "users", "entities", "job_parameters", "job_results", "used"):
            for row in source.execute(f"SELECT * FROM {table}"):
                values = {k: (datetime.fromisoformat(row[k]) if k in times and row[k] else
                              (row[k] == "True" if k == "byref" else bool(row[k]) if k == "active" else row[k]))
                          for k in row.keys()}
                columns = ", ".join(values)
                conn.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + k for k in values)})"),
                             values)
    source.close()
    engine.dispose()
    sqlite_file.unlink()  # the move must read PostgreSQL
    host = url.query.get("host") or url.host or "localhost"
    with open(settings, "a", encoding="utf-8") as out:
        out.write(f"STORAGE_TYPE = 'PostgreSQL'\nPGSQL_HOST = {str(host)!r}\nPGSQL_PORT = {url.query.get('port') or url.port or 5432}\n"
                  f"PGSQL_DATABASE = {database!r}\nPGSQL_USER = {url.username or 'opus'!r}\n"
                  f"PGSQL_PASSWORD = {url.password or ''!r}\n")
    return settings


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
