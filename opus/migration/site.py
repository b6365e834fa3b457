"""An installation of the original OPUS, as its files say: settings, paths and database rows.

The original's settings are Python (``settings_local.py`` over ``uws_server/settings.py``).  They
are not executed here: only top-level ``NAME = <literal>`` assignments are read (``ast``), and
what a file does not set takes the original's default.  ``--from`` names that settings file, the
directory holding it (the original's checkout), or the original's ``VAR_PATH`` itself.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError

from opus.errors import ConfigurationError

#: The original's defaults (uws_server/settings.py) for what a settings_local.py may leave out.
DEFAULTS: dict[str, Any] = {
    "VAR_PATH": "local_var", "BASE_URL": "http://localhost:8082", "STORAGE_TYPE": "SQLite",
    "SQLITE_FILE_NAME": "job_database.db", "PGSQL_HOST": "localhost", "PGSQL_PORT": 5432,
    "PGSQL_DATABASE": "opus", "PGSQL_USER": "opus", "PGSQL_PASSWORD": "opus", "ADMIN_NAME": "opus-admin",
    "CHECK_PERMISSIONS": False, "ALLOW_ANONYMOUS": True, "JDL": "VOTFile",
}
TABLES = ("jobs", "job_parameters", "job_results", "users", "entities", "used")
Row = dict[str, Any]


def read_settings(path: Path) -> dict[str, Any]:
    """The literal top-level assignments of an original settings file (nothing is executed)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise ConfigurationError(f"cannot read the original's settings {path}: {exc}") from None
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:  # an expression: the original computed it; not needed here
                continue
    return found


def _locate(source: Path) -> tuple[dict[str, Any], Path, str]:
    """(settings, APP_PATH, where the settings came from) for ``--from``."""
    if source.is_file():  # APP_PATH is the checkout: the file is at its top or in uws_server/
        folder = source.resolve().parent
        return read_settings(source), folder.parent if folder.name == "uws_server" else folder, str(source)
    if not source.is_dir():
        raise ConfigurationError(f"--from {source}: no such file or directory")
    for candidate in (source / "settings_local.py", source / "uws_server" / "settings_local.py"):
        if candidate.is_file():
            return read_settings(candidate), source.resolve(), str(candidate)
    if (source / "db").is_dir() or (source / "jdl").is_dir():  # the VAR_PATH itself: defaults
        return {"VAR_PATH": str(source.resolve())}, source.resolve(), f"{source} (its VAR_PATH; default settings)"
    raise ConfigurationError(f"--from {source}: neither an original OPUS settings file, nor a directory "
                             "holding settings_local.py, nor its VAR_PATH (with db/ and jdl/)")


@dataclass
class OriginalSite:
    """Where an original installation keeps what ``opus migrate`` reads."""

    settings: dict[str, Any]
    var: Path
    origin: str
    _engine: Engine | None = field(default=None, repr=False)

    @classmethod
    def open(cls, source: str | Path) -> OriginalSite:
        found, app_path, origin = _locate(Path(source))
        settings = {**DEFAULTS, **found}
        var = Path(str(settings["VAR_PATH"]))
        var = var if var.is_absolute() else app_path / var
        if not var.is_dir():
            raise ConfigurationError(f"the original's VAR_PATH {var} (from {origin}) is not a directory")
        return cls(settings, var, origin)

    # ---- paths -----------------------------------------------------------------------------------
    @property
    def jdl(self) -> Path:
        return self.var / "jdl"

    def results_dir(self, job_id: str) -> Path:
        return self.var / "results" / job_id

    def uploads_dir(self, job_id: str) -> Path:
        return self.var / "uploads" / job_id

    def jobdata_dir(self, job_id: str) -> Path:
        return self.var / "jobdata" / job_id

    # ---- database --------------------------------------------------------------------------------
    def database_url(self) -> str | URL:
        if str(self.settings["STORAGE_TYPE"]) == "PostgreSQL":
            s = self.settings
            return URL.create("postgresql+psycopg2", username=str(s["PGSQL_USER"]),
                              password=str(s["PGSQL_PASSWORD"]), host=str(s["PGSQL_HOST"]),
                              port=int(s["PGSQL_PORT"]), database=str(s["PGSQL_DATABASE"]))
        path = self.var / "db" / str(self.settings["SQLITE_FILE_NAME"])
        if not path.is_file():
            raise ConfigurationError(f"the original's database {path} does not exist")
        return f"sqlite:///file:{path}?mode=ro&uri=true"

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.database_url())
        return self._engine

    def rows(self, table: str) -> list[Row]:
        """Every row of one of the original's tables ([] when the table does not exist)."""
        assert table in TABLES
        try:
            with self.engine().connect() as conn:
                return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table}"))]
        except SQLAlchemyError as exc:
            message = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            if ("no such table" in message or "relation" in message and "does not exist" in message) \
                    and table != "jobs":  # tables added over the years: an older database lacks them
                return []
            raise ConfigurationError(f"cannot read the original's database: {message}") from None

    def client_roles(self) -> dict[str, set[str]]:
        """The roles ("admin", "job_definition", ...) of each account of the original web client's
        account database (``db/flask_login.db``, accounts named by e-mail), if there is one."""
        path = self.var / "db" / "flask_login.db"
        if not path.is_file():
            return {}
        sql = ("SELECT u.email, r.name FROM user u JOIN roles_users ru ON ru.user_id = u.id "
               "JOIN role r ON r.id = ru.role_id")
        found: dict[str, set[str]] = {}
        try:
            engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
            with engine.connect() as conn:
                for email, role in conn.execute(text(sql)):
                    if email and role:
                        found.setdefault(str(email), set()).add(str(role))
            engine.dispose()
        except SQLAlchemyError:
            return {}
        return found

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def parse_time(value: object) -> datetime | None:
    """An instant of the original's database (naive local time; SQLite kept 'YYYY-MM-DDTHH:MM:SS')."""
    if value is None or value == "" or value == "None":
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip().replace(" ", "T"))
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.astimezone()  # the original wrote local time


def truthy(value: object) -> bool:
    """The original's booleans: SQLite kept some as the strings 'True'/'False'."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "t")
    return bool(value)


def files_in(folder: Path, pattern: str) -> Iterator[Path]:
    return iter(sorted(folder.glob(pattern))) if folder.is_dir() else iter(())
