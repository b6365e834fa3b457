"""The operator's view (issue 13, point 17): the `opus` command line itself — help for every option,
the version, and the clear refusals of `opus user` and `opus init`."""

from __future__ import annotations

import argparse
import re

from sqlalchemy import text

from conftest import REPO_ROOT, signed_in_sessions
from operator_tools import current_user, run_opus, settings_file
from opus.cli.main import build_parser
from opus.cli.main import main as opus_main
from opus.storage.database import create_engine_for, upgrade_schema


# ---- point 17: the command line ---------------------------------------------------------------------------
def _walk(parser: argparse.ArgumentParser, where: str = "opus"):
    for action in parser._actions:
        yield where, action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"{where} {choice.dest}", choice
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{where} {name}")


def test_every_option_and_argument_has_help():
    seen = list(_walk(build_parser()))
    assert len(seen) > 60  # the whole tree was walked: serve, init, check, user ..., jdl ...
    missing = [f"{where}: {action.dest}" for where, action in seen
               if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS]
    assert missing == []


def test_version():
    r = run_opus("--version")
    assert r.returncode == 0
    assert r.stdout.startswith("opus 2.")


def test_opus_jdl_says_it_works_on_jdl_dir():
    r = run_opus("jdl", "--help")
    assert r.returncode == 0 and "Works on the files of JDL_DIR directly" in " ".join(r.stdout.split())
    assert "JDL_DIR (its files, directly; not over HTTP)" in " ".join(run_opus("--help").stdout.split())


def test_granting_an_unknown_definition_is_refused(tmp_path, capsys):
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), JDL_DIR=str(REPO_ROOT / "jdl"),
                       SERVICE_USER=current_user())
    assert opus_main(["--settings", str(s), "init"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "alice", "--jobdefs", "dummy"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "bob", "--jobdefs", "dummy,nosuchdef"]) == 1
    assert "no job definition named 'nosuchdef'" in capsys.readouterr().err
    assert opus_main(["--settings", str(s), "user", "grant", "alice", "nosuchdef"]) == 1
    err = capsys.readouterr().err
    assert "no job definition named 'nosuchdef'" in err and len(err.strip().splitlines()) == 1
    assert opus_main(["--settings", str(s), "user", "grant", "alice", "copy"]) == 0
    assert "may use: copy dummy" in capsys.readouterr().out
    assert opus_main(["--settings", str(s), "user", "revoke", "alice", "nosuchdef"]) == 0  # revoking: always


def test_the_editor_role_is_given_and_taken_on_the_command_line(tmp_path, capsys):
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), JDL_DIR=str(REPO_ROOT / "jdl"),
                       SERVICE_USER=current_user())
    assert opus_main(["--settings", str(s), "init"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "carol", "--editor"]) == 0
    assert opus_main(["--settings", str(s), "user", "add", "dave"]) == 0
    from opus.auth.admin import UserAdmin
    from opus.settings import load_settings
    from opus.storage import create_engine_for
    from opus.storage.userstore import UserStore
    admin = UserAdmin(UserStore(create_engine_for(load_settings(str(s)).database_url), load_settings(str(s))))
    assert admin.get("carol").is_editor and not admin.get("dave").is_editor
    capsys.readouterr()
    assert opus_main(["--settings", str(s), "user", "set", "carol", "--editor", "no"]) == 0
    assert opus_main(["--settings", str(s), "user", "set", "dave", "--editor", "yes"]) == 0
    assert not admin.get("carol").is_editor and admin.get("dave").is_editor


def test_the_admin_api_refuses_granting_an_unknown_definition(api):
    root = signed_in_sessions(api, (("root", {"admin": True}), ("alice", {"jobdefs": "dummy"})))["root"]
    r = root.patch(f"{api.url}/admin/users/alice", json={"grant": ["nosuchdef"]})
    assert r.status_code == 400 and "no job definition named 'nosuchdef'" in r.text
    r = root.post(f"{api.url}/admin/users", json={"name": "carol", "jobDefinitions": "dummy,nosuchdef"})
    assert r.status_code == 400
    assert root.patch(f"{api.url}/admin/users/alice", json={"grant": ["copy"]}).status_code == 200


def test_init_against_an_unreachable_database_says_so_in_one_line(tmp_path):
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), SERVICE_USER=current_user(),
                       DATABASE_URL="postgresql+psycopg2://opus:secret@127.0.0.1:1/opus")
    for command in ("init", "maintenance"):
        r = run_opus(command, settings=s)
        assert r.returncode == 2, r
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("opus: cannot use the database postgresql+psycopg2://opus:***@127.0.0.1:1/opus")
        assert "secret" not in r.stderr


# ---- found from outside (session 19): what the operator sees when the settings or the database are wrong ---
def test_a_settings_file_python_cannot_run_is_one_line_naming_its_line(tmp_path):
    """Was a traceback through OPUS's start-up (runpy, load_settings, main)."""
    cases = {"MAX_WAIT = \n": ("line 1", "invalid syntax"),
             "DATA_DIR = '/tmp/x'\nMAX_WAIT = UNDEFINED * 2\n": ("line 2", "NameError: name 'UNDEFINED' is not defined"),
             "import no_such_module_here\n": ("line 1", "ModuleNotFoundError")}
    for content, (line, message) in cases.items():
        s = tmp_path / "s.py"
        s.write_text(content)
        r = run_opus("check", settings=s)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith(f"opus: settings file '{s}', {line}: ") and message in lines[0], lines


def test_check_says_whether_the_database_can_be_used(tmp_path, database_url):
    """`opus check` said nothing of the database: with PostgreSQL down, or the schema of an older
    OPUS, every line was ok."""
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), SERVICE_USER=current_user(),
                      DATABASE_URL=database_url)
    engine = create_engine_for(database_url)
    try:
        if database_url.startswith("sqlite"):  # nothing yet: `check` must not create the file
            r = run_opus("check", settings=s)
            assert r.returncode == 1 and "PROBLEM  database sqlite:///" in r.stdout and "no such file" in r.stdout
            assert not (tmp_path / "var" / "opus.sqlite").exists()
        upgrade_schema(engine, "0009")  # as an OPUS of an older version left it
        r = run_opus("check", settings=s)
        assert r.returncode == 1
        assert re.search(r"PROBLEM  database .*: the database schema is at revision 0009; this version of OPUS "
                         r"needs \d{4}: upgrade it with `opus init`", r.stdout), r.stdout
        r = run_opus("init", settings=s)
        assert r.returncode == 0 and "database schema upgraded from revision 0009, up to date (" in r.stdout, r.stdout
        r = run_opus("check", settings=s)
        assert "PROBLEM" not in r.stdout and re.search(r"^ok       database .* \(schema current\)$", r.stdout, re.M)

        with engine.begin() as conn:  # as a newer OPUS would leave it
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        r = run_opus("check", settings=s)
        assert "the database schema is at revision 9999, which this version of OPUS does not know" in r.stdout
        r = run_opus("init", settings=s)  # refused in one line (was Alembic's traceback)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "a newer OPUS upgraded it" in lines[0], r.stderr
    finally:
        engine.dispose()


def test_check_says_when_the_database_cannot_be_reached(tmp_path):
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), SERVICE_USER=current_user(),
                      DATABASE_URL="postgresql+psycopg2://opus:secret@127.0.0.1:1/opus")
    r = run_opus("check", settings=s)
    assert r.returncode == 1 and "secret" not in r.stdout
    assert "PROBLEM  database postgresql+psycopg2://opus:***@127.0.0.1:1/opus: cannot connect: " in r.stdout


def test_commands_on_a_database_without_the_schema_say_to_run_init(tmp_path):
    """`opus user` and `opus maintenance` (cron) said SQL's words: 'no such table: users'."""
    s = settings_file(tmp_path / "s.py", DATA_DIR=str(tmp_path / "var"), SERVICE_USER=current_user())
    for command in (("user", "list"), ("maintenance",)):
        r = run_opus(*command, settings=s)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("opus: the database has no OPUS tables") and "`opus init`" in lines[0], lines
    r = run_opus("init", settings=s)
    assert r.returncode == 0 and "database schema created, up to date (sqlite:///" in r.stdout, r.stdout
    assert "database schema up to date (" in run_opus("init", settings=s).stdout  # the second time
    assert run_opus("maintenance", settings=s).stdout.strip() == "0 expired job(s) destroyed"
