"""VOSI availability says false, and why, when the database or the execution manager is really down
(no monkeypatching: an unreachable PostgreSQL server, a SLURM controller that does not answer)."""

from __future__ import annotations

import io
import stat
from xml.etree import ElementTree as ET

from conftest import LiveServer, make_settings

from opus.server import create_app
from opus.service.root import Root
VOSI = "{http://www.ivoa.net/xml/VOSIAvailability/v1.0}"


def _read(body: bytes) -> tuple[str, list[str]]:
    root = ET.fromstring(body)
    return root.findtext(f"{VOSI}available"), [n.text for n in root.findall(f"{VOSI}note")]


def test_unreachable_database(tmp_path):
    # A PostgreSQL URL whose server does not exist: a unix socket directory with nothing in it.
    (tmp_path / "nopg").mkdir()
    settings = make_settings(tmp_path, DATABASE_URL=f"postgresql+psycopg2://opus@/opus?host={tmp_path / 'nopg'}")
    services = Root.build(settings)
    app = create_app(settings, services, start=False)
    status = {}
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/availability", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""),
               "wsgi.errors": io.StringIO(), "QUERY_STRING": ""}
    body = b"".join(app(environ, lambda s, h, *a: status.setdefault("status", s)))
    assert status["status"].startswith("200")
    available, notes = _read(body)
    assert available == "false"
    assert any("database does not answer" in n for n in notes), notes
    services.store.engine.dispose()


def test_slurm_controller_down(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for command in ("squeue", "sbatch", "scancel"):
        script = bindir / command
        script.write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller "
                          "(connect failure)' >&2\nexit 1\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    server = LiveServer(make_settings(tmp_path, MANAGER="slurm", SLURM_BIN_DIR=str(bindir)))
    try:
        r = server.http.get(f"{server.url}/availability")
        available, notes = _read(r.content)
        assert available == "false"
        assert any("slurm execution manager is not available" in n for n in notes), notes
        assert any("the database answers" in n for n in notes), notes
    finally:
        server.stop()
