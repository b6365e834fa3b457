"""The UWS 1.1 REST tree: ``/rest/<jobname>`` and ``/rest/<jobname>/<job-id>/...``.

Each route parses, calls one job service method, and renders (GUIDE: thin handlers).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from bottle import HTTPResponse, request

from opus.errors import BadRequest, ConfigurationError, NotFound
from opus.jobdef import JobDefinition
from opus.jobdef.content_types import result_type, type_by_extension
from opus.server import render, urls, web
from opus.server.files import files_base_url, serve_file
from opus.server.routing import RouteTable, services, settings
from opus.server.urls import JOB_LIST_RULE, JOB_RULE as JOB
from opus.server.web import (as_json, base_url, form_input, header, identity, query_items, query_values, required,
                             see_other, single, text, wants_json, xml)
from opus.service import idempotency
from opus.service.submission import Upload
from opus.storage.jobfiles import JobFiles, read_json
from opus.timeutil import format_instant, parse_instant, parse_int
from opus.uws import FINAL, NOT_XML_CHAR, Job, JobRef, Phase, parse_phase

#: The longest RUNID filter of a job list (a run id itself is at most 64 characters; wildcards add some).
MAX_RUNID_FILTER = 200
#: Job lists longer than this (LAST above it, or no LAST) are streamed rather than built in memory.
STREAM_ABOVE = 1000
routes = RouteTable()


def list_url(jobname: str) -> str:
    return urls.job_list(base_url(settings()), jobname)


def job_url(jobname: str, job_id: str) -> str:
    return urls.job(base_url(settings()), jobname, job_id)


def files_url(jobname: str, job_id: str) -> str:
    """Where the job's files (results, uploads) are linked: RESULTS_BASE_URL's origin when set."""
    return urls.job(files_base_url(settings()), jobname, job_id)


def job_of(jobname: str, job_id: str) -> Job:
    return services().jobs.get(jobname, job_id, identity())


def entities_of(job: Job) -> dict[str, tuple[str, str]]:
    """{result id: (entity id, store URL)} of a finished job's results."""
    if not job.results:
        return {}
    base = files_base_url(settings())
    return {e.role: (e.entity_id, urls.store_file(base, e.entity_id, e.file_name))
            for e in services().entities.generated_by([job.job_id])}


def jobdef_of(job: Job) -> JobDefinition | None:
    """The definition version the job was made with; None if it is gone or broken."""
    try:
        return services().registry.get(job.jobname, job.jdl_version)
    except (NotFound, ConfigurationError):
        return None


# ---- the job list ------------------------------------------------------------------------------
@routes.get(JOB_LIST_RULE)
def job_list(jobname: str) -> HTTPResponse:
    phases = [parse_phase(p) for p in query_values("PHASE")]
    after, last, before, run_id = (query_values(name) for name in ("AFTER", "LAST", "BEFORE", "RUNID"))
    if max(len(after), len(last), len(before), len(run_id)) > 1:
        raise BadRequest("AFTER, LAST, BEFORE and RUNID may be given once each")
    limit = parse_int(last[0], "LAST", 1) if last else None
    if run_id and (len(run_id[0]) > MAX_RUNID_FILTER or NOT_XML_CHAR.search(run_id[0])):
        raise BadRequest(f"RUNID: at most {MAX_RUNID_FILTER} characters, none a control character")
    # Long lists are streamed from a database cursor: memory stays bounded at any size.
    stream = limit is None or limit > STREAM_ABOVE
    since = parse_instant(after[0], "AFTER") if after else None
    until = parse_instant(before[0], "BEFORE") if before else None
    refs = services().jobs.list(jobname, identity(), phases, since, limit, stream=stream, before=until,
                                run_id=run_id[0] if run_id else None)
    url = list_url(jobname)
    if not stream:
        return as_json(render.joblist_json(refs, url)) if wants_json() else xml(render.joblist_xml(refs, url))
    refs = _primed(refs)  # the first batch is read here: a database outage is a 503, not a cut body
    if wants_json():
        chunks, ctype = render.joblist_json_chunks(refs, url), web.JSON_TYPE
    else:
        chunks, ctype = render.joblist_xml_chunks(refs, url), web.XML_TYPE
    return HTTPResponse((c.encode("utf-8") for c in chunks), status=200, headers={"Content-Type": ctype})


def _primed(refs: Iterable[JobRef]) -> Iterator[JobRef]:
    """``refs`` with its first item already read."""
    it = iter(refs)
    first = next(it, None)
    return it if first is None else itertools.chain((first,), it)


@routes.post(JOB_LIST_RULE)
def create_job(jobname: str) -> HTTPResponse:
    fields, files = form_input(settings())
    fields += [(k, v) for k, v in query_items() if k.upper() == "PHASE"]
    key = header(idempotency.HEADER)
    job = services().jobs.create(jobname, identity(), fields, files, base=base_url(settings()),
                                 idempotency_key=None if key is None else idempotency.parse_key(key))
    return see_other(job_url(jobname, job.job_id))


# ---- one job ---------------------------------------------------------------------------------------
@routes.get(JOB)
def get_job(jobname: str, job_id: str) -> HTTPResponse:
    # What the answer needs of the request is worked out before any WAIT: a thousand waiters woken
    # at once then have little left to do each.
    url = job_url(jobname, job_id)
    files = files_url(jobname, job_id)
    as_json_ = wants_json()
    waits = query_values("WAIT")
    if waits:
        seconds = min(parse_int(w, "WAIT", -1) for w in waits)  # -1: the server's maximum
        phases = query_values("PHASE")
        if len(phases) > 1:
            raise BadRequest("PHASE may be given once with WAIT")
        phase = parse_phase(phases[0]) if phases else None
        job, wake = services().jobs.wait_shared(jobname, job_id, identity(), seconds, phase)
    else:
        job, wake = job_of(jobname, job_id), None

    def body() -> bytes:
        if as_json_:
            return json.dumps(render.job_json(job, url, jobdef_of(job), entities_of(job), files_url=files)).encode()
        return render.job_xml(job, url, files_url=files).encode("utf-8")
    # WAITs woken by one change share the job read after it, and its rendering (opus.events.notify.Wake).
    data = body() if wake is None else wake.once((as_json_, url, files), body)
    return HTTPResponse(body=data, headers={"Content-Type": web.JSON_TYPE if as_json_ else web.XML_TYPE})


@routes.delete(JOB)
def delete_job(jobname: str, job_id: str) -> HTTPResponse:
    services().jobs.delete(jobname, job_id, identity())
    return see_other(list_url(jobname))


@routes.post(JOB)
def post_job(jobname: str, job_id: str) -> HTTPResponse:
    fields, files = form_input(settings())
    action = single(fields, "ACTION", required=False)
    phase = single(fields, "PHASE", required=False)
    rest = [(k, v) for k, v in fields if k.upper() not in ("ACTION", "PHASE")]
    if action is not None:
        if action.strip().upper() != "DELETE":
            raise BadRequest(f"ACTION={action!r}: the only action is DELETE")
        services().jobs.delete(jobname, job_id, identity())
        return see_other(list_url(jobname))
    if rest or files:
        if not settings().PARAMETERS_AT_JOB_URL:
            raise BadRequest("parameters are not accepted at the job URL here: POST them to "
                             f"{job_url(jobname, job_id)}/parameters")
        services().jobs.set_parameters(jobname, job_id, identity(), rest, files, base=base_url(settings()))
    if phase is not None:
        _change_phase(jobname, job_id, phase)
    elif not (rest or files):
        raise BadRequest("nothing to do: send PHASE=RUN, PHASE=ABORT, ACTION=DELETE or parameters")
    return see_other(job_url(jobname, job_id))


def _change_phase(jobname: str, job_id: str, value: str) -> None:
    wanted = value.strip().upper()
    if wanted == "RUN":
        services().jobs.run(jobname, job_id, identity())
    elif wanted == "ABORT":
        services().jobs.abort(jobname, job_id, identity())
    else:
        raise BadRequest(f"PHASE={value!r}: only RUN and ABORT can be asked for")


# ---- atomic children -------------------------------------------------------------------------------
@routes.get(JOB + "/phase")
def get_phase(jobname: str, job_id: str) -> HTTPResponse:
    return text(job_of(jobname, job_id).phase.value)


@routes.post(JOB + "/phase")
def post_phase(jobname: str, job_id: str) -> HTTPResponse:
    fields, _ = form_input(settings())
    _change_phase(jobname, job_id, required(fields, "PHASE"))
    return see_other(job_url(jobname, job_id))


@routes.get(JOB + "/executionduration")
def get_duration(jobname: str, job_id: str) -> HTTPResponse:
    return text(str(job_of(jobname, job_id).execution_duration))


@routes.post(JOB + "/executionduration")
def post_duration(jobname: str, job_id: str) -> HTTPResponse:
    fields, _ = form_input(settings())
    value = required(fields, "EXECUTIONDURATION")
    services().jobs.set_execution_duration(jobname, job_id, identity(), value)
    return see_other(job_url(jobname, job_id))


@routes.get(JOB + "/destruction")
def get_destruction(jobname: str, job_id: str) -> HTTPResponse:
    return text(format_instant(job_of(jobname, job_id).destruction_time))


@routes.post(JOB + "/destruction")
def post_destruction(jobname: str, job_id: str) -> HTTPResponse:
    fields, _ = form_input(settings())
    value = required(fields, "DESTRUCTION")
    services().jobs.set_destruction(jobname, job_id, identity(), value)
    return see_other(job_url(jobname, job_id))


@routes.get(JOB + "/quote")
def get_quote(jobname: str, job_id: str) -> HTTPResponse:
    return text(format_instant(job_of(jobname, job_id).quote))


@routes.get(JOB + "/owner")
def get_owner(jobname: str, job_id: str) -> HTTPResponse:
    return text(job_of(jobname, job_id).owner_id or "")


@routes.get(JOB + "/error")
def get_error(jobname: str, job_id: str) -> HTTPResponse:
    job = job_of(jobname, job_id)
    if job.error is None:
        raise NotFound(f"job {job_id} has no error")
    return HTTPResponse(body=render.error_votable(job.error.message).encode(),
                        headers={"Content-Type": "application/x-votable+xml; charset=UTF-8"})


# ---- parameters ---------------------------------------------------------------------------------------
@routes.get(JOB + "/parameters")
def get_parameters(jobname: str, job_id: str) -> HTTPResponse:
    job = job_of(jobname, job_id)
    url = files_url(jobname, job_id)  # only uploads are links
    if wants_json():
        return as_json(render.parameters_json(job, url))
    return xml(render.parameters_xml(job, url))


@routes.post(JOB + "/parameters")
def post_parameters(jobname: str, job_id: str) -> HTTPResponse:
    fields, files = form_input(settings())
    services().jobs.set_parameters(jobname, job_id, identity(), fields, files, base=base_url(settings()))
    return see_other(job_url(jobname, job_id))


@routes.get(JOB + "/parameters/<name>")
def get_parameter(jobname: str, job_id: str, name: str) -> HTTPResponse:
    job = job_of(jobname, job_id)
    param = job.parameter(name)
    if param is None:
        raise NotFound(f"job {job_id} has no parameter {name!r}")
    if param.by_reference and param.value.startswith("param:"):
        files = JobFiles.of(settings().jobs_dir, job_id)
        # Typed by the extension of the client's file name in OPUS's own table: the client's
        # Content-Type was never kept, and the name is only ever a download name.
        client_name = str((read_json(files.inputs_record, {}).get(name) or {}).get("file_name") or name)
        return _file(files.uploads, name, type_by_extension(client_name), download_name=client_name)
    return text(param.value)


@routes.put(JOB + "/parameters/<name>")
def put_parameter(jobname: str, job_id: str, name: str) -> HTTPResponse:
    job = job_of(jobname, job_id)
    current = job.parameter(name)
    if current is not None and current.by_reference:
        web.check_body_size(settings().MAX_UPLOAD_SIZE)
        services().jobs.set_parameters(jobname, job_id, identity(), [], [Upload(name, request.body)])
    else:
        try:
            value = web.read_body(settings().MAX_BODY_SIZE).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("a parameter value must be UTF-8 text; upload files with multipart") from None
        services().jobs.set_parameters(jobname, job_id, identity(), [(name, value)], base=base_url(settings()))
    return see_other(job_url(jobname, job_id))


# ---- results and output ---------------------------------------------------------------------------------
@routes.get(JOB + "/results")
def get_results(jobname: str, job_id: str) -> HTTPResponse:
    job = job_of(jobname, job_id)
    url = files_url(jobname, job_id)
    if wants_json():
        return as_json(render.results_json(job, url, jobdef_of(job), entities_of(job)))
    return xml(render.results_xml(job, url))


def _no_result(job: Job, result_id: str) -> str:
    """Why a job has no such result, and what to do: a job that has not ended has none yet (was a
    bare 'no result', read as a misspelt name by a newcomer asking too early)."""
    said = f"job {job.job_id} has no result {result_id[:64]!r}"
    if job.phase is Phase.PENDING:
        return f"{said} yet: it is PENDING (start it with POST PHASE=RUN to …/phase); results appear when it is COMPLETED"
    if job.phase not in FINAL:
        return (f"{said} yet: it is {job.phase.value}; results appear when it is COMPLETED "
                "(GET the job with ?WAIT=<seconds> to wait for a change)")
    have = ", ".join(r.result_id for r in job.results)
    return f"{said}; its results: {have}" if have else f"{said}: it ended {job.phase.value} without results"


@routes.get(JOB + "/results/<result_id>")
def get_result(jobname: str, job_id: str, result_id: str) -> HTTPResponse:
    job = job_of(jobname, job_id)
    result = job.result(result_id)
    if result is None:
        raise NotFound(_no_result(job, result_id))
    # The type is decided again from the definition: a record made before the server decided
    # types may hold what a job's report claimed.
    jobdef = jobdef_of(job)
    ctype = (result_type(jobdef, result.result_id, result.file_name) if jobdef is not None
             else result.content_type)
    return _file(JobFiles.of(settings().jobs_dir, job_id).results, result.file_name, ctype)


@routes.get(JOB + "/stdout")
def get_stdout(jobname: str, job_id: str) -> HTTPResponse:
    job_of(jobname, job_id)
    return _file(JobFiles.of(settings().jobs_dir, job_id).root, "stdout.log", "text/plain", "stdout")


@routes.get(JOB + "/stderr")
def get_stderr(jobname: str, job_id: str) -> HTTPResponse:
    job_of(jobname, job_id)
    return _file(JobFiles.of(settings().jobs_dir, job_id).root, "stderr.log", "text/plain", "stderr")


def _file(root: Path, name: str, content_type: str, what: str | None = None,
          download_name: str | None = None) -> HTTPResponse:
    """Serve a file of the job's area (Range, HEAD, Last-Modified handled by bottle) with the headers
    that keep it from attacking the browser (opus.server.files)."""
    path = root / name
    if not path.is_file():
        raise NotFound(f"{what or name} is not available (yet)")
    response = serve_file(root, name, content_type, download_name or name)
    if response.status_code == 416:  # a Range beyond the file: say so
        return response
    if response.status_code >= 400:
        raise NotFound(f"{what or name} is not available")
    return response
