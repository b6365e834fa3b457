"""The whole move: definitions, then users, then jobs; a report of it.

A dry run reads everything and writes nothing: against a database that is not created yet it
plans against an empty throw-away one.  A real run keeps its report and the new users' tokens in
``DATA_DIR/migration/``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from opus.jobdef.registry import JobDefinitionRegistry
from opus.migration.accounts import ANONYMOUS, Accounts
from opus.migration.definitions import import_definitions
from opus.migration.jobs import JobImporter
from opus.migration.report import Report
from opus.migration.site import OriginalSite
from opus.settings import Settings
from opus.storage.database import create_engine_for, refresh_statistics, schema_is_current, sqlite_file, upgrade_schema
from opus.storage.userstore import UserStore
from opus.timeutil import utcnow


def migrate(settings: Settings, source: str | Path, dry_run: bool = False) -> Report:
    """Import the original installation at ``source`` into the OPUS of ``settings``."""
    # The definitions' import warnings go to the report; not also to the log, line by line.
    notes = logging.getLogger("opus.jobdef.original")
    level = notes.level
    notes.setLevel(logging.ERROR)
    try:
        return _migrate(settings, source, dry_run)
    finally:
        notes.setLevel(level)


def _migrate(settings: Settings, source: str | Path, dry_run: bool) -> Report:
    report = Report(dry_run=dry_run)
    site = OriginalSite.open(source)
    report.note(f"the original's settings: {site.origin}; its data: {site.var}")
    rows_ready = site.rows("jobs")  # fails early, with one line, when its database cannot be read
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    folder = Path(settings.DATA_DIR) / "migration"
    with tempfile.TemporaryDirectory(prefix="opus-migrate-") as scratch:
        url = settings.database_url
        file = sqlite_file(url)
        absent = file is not None and not file.is_file()
        engine = create_engine_for(f"sqlite:///{Path(scratch) / 'plan.sqlite'}" if dry_run and absent else url)
        if dry_run and (absent or not schema_is_current(engine)):
            report.note("the database of these settings is not created or not up to date: this command "
                        "without --dry-run (or `opus init`) creates or upgrades it")
            engine.dispose()
            engine = create_engine_for(f"sqlite:///{Path(scratch) / 'plan.sqlite'}")
            upgrade_schema(engine)
        elif not dry_run:
            upgrade_schema(engine)
        try:
            jdl_dir = Path(settings.JDL_DIR)
            catalog = import_definitions(site, jdl_dir, report)
            known = set(catalog.live) | set(JobDefinitionRegistry(jdl_dir).names())
            accounts = Accounts(UserStore(engine, settings), folder / f"tokens-{stamp}.txt", report)
            owners = {str(r.get("owner")) for r in rows_ready if str(r.get("owner") or "") not in ANONYMOUS}
            accounts.import_users(site, known, owners)
            importer = JobImporter(site, engine, settings.jobs_dir, accounts, catalog, report)
            importer.run(importer.load(), known)
            if not dry_run:
                refresh_statistics(engine)  # a bulk load: the planner must not think the tables empty
        finally:
            engine.dispose()
            site.close()
    if not dry_run:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"report-{stamp}.txt"
        report.note(f"this report is kept in {path}")
        path.write_text(report.text(), encoding="utf-8")
    return report
