"""``opus migrate``: bring an installation of the original OPUS (2015-2025) across.

The original kept everything under its ``VAR_PATH``: ``db/job_database.db`` (or a PostgreSQL
database, its ``STORAGE_TYPE``), ``jdl/`` (definitions, their scripts, ``saved/`` earlier versions),
``results/<job id>/``, ``uploads/<job id>/`` and ``jobdata/<job id>/`` (stdout, stderr).  This
package reads those (``site``), then imports the definitions (``definitions``), the users
(``accounts``) and the jobs with their files and provenance links (``jobs``), keeping every job id
and entity id.  ``run.migrate`` is the whole move; a ``report.Report`` says what was done and what
could not be imported, and why.  Nothing of the original's code is used, only its file layout and
schema (read at commit 4487bcb3d4b244b23dbb19459d6f2de0ecffce6a).
"""

from opus.migration.report import Report
from opus.migration.run import migrate

__all__ = ["Report", "migrate"]
