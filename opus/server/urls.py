"""The URLs OPUS gives out, built in one place: route rules and absolute links.

``base`` is the service's public base URL (``opus.server.web.base_url``) or, for the links to job
files, the files' base (``opus.server.files.files_base_url``, RESULTS_BASE_URL when set).
"""

from __future__ import annotations

from urllib.parse import quote

from opus.uws import ID_PATTERN, ID_RE

#: The route rules of the UWS tree (bottle syntax).
JOB_LIST_RULE = "/rest/<jobname>"
JOB_RULE = "/rest/<jobname>/<job_id>"
#: An entity of the result store (its id: ``opus.uws.ID_PATTERN``).
ENTITY_ID_RE = ID_RE
ENTITY_RULE = f"/store/<entity_id:re:{ID_PATTERN}>"


def job_list(base: str, jobname: str) -> str:
    return f"{base}/rest/{jobname}"


def job(base: str, jobname: str, job_id: str) -> str:
    return f"{job_list(base, jobname)}/{job_id}"


def job_in_list(list_url: str, job_id: str) -> str:
    """A job's URL from its list's (the job ids are hex: nothing to escape)."""
    return f"{list_url}/{job_id}"


def parameter(job_url: str, name: str) -> str:
    """Where an uploaded parameter is served."""
    return f"{job_url}/parameters/{name}"


def result(job_url: str, result_id: str) -> str:
    return f"{job_url}/results/{result_id}"


def jdl_list(base: str) -> str:
    return f"{base}/jdl"


def jdl(base: str, name: str) -> str:
    return f"{jdl_list(base)}/{name}"


def jdl_version(base: str, name: str, version: str) -> str:
    return f"{jdl(base, name)}?version={version}"


def proposals(base: str) -> str:
    return f"{jdl_list(base)}/proposals"


def proposal(base: str, name: str) -> str:
    return f"{proposals(base)}/{name}"


def store_file(base: str, entity_id: str, file_name: str) -> str:
    """An entity's file in the result store, under its own (quoted) name."""
    return f"{base}/store/{entity_id}/{quote(file_name, safe='')}"


def web(base: str, page: str = "") -> str:
    """A page of the web client (``page`` without a leading slash)."""
    return f"{base}/web/{page}"
