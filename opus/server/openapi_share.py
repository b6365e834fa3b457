"""The OpenAPI description of sharing and notifications (``/share``, ``/shared``, ``/notifications``,
see ``share_routes``)."""

from __future__ import annotations

from opus.server.openapi_parts import (
    FORM,
    ID_SCHEMA,
    JSON,
    STRING,
    Doc,
    errors,
    file_responses,
    obj,
    ok,
    op,
    path_param,
    query,
)

TAG = "Sharing"
LINK = obj({"id": STRING, "url": STRING, "entityId": STRING, "label": STRING, "created": STRING,
            "expires": STRING, "revoked": {"type": ["string", "null"]}})
REQUEST = obj({"entity": {"type": "string", "description": "An entity's id (the /store)"},
               "job": {"type": "string", "description": "A job's id, with result or input"},
               "result": {"type": "string", "description": "A result id of that job"},
               "input": {"type": "string", "description": "An input name of that job"},
               "lifetime": {"type": "integer", "minimum": 1,
                            "description": "Seconds (default 7 days; at most SHARE_MAX_LIFETIME)"}},
              additionalProperties=False)
EMAIL = obj({"email": {"type": ["string", "null"], "maxLength": 254}}, additionalProperties=False)
NULLABLE = {"type": ["string", "null"]}
JOB = obj({"jobId": STRING, "jobName": STRING, "phase": STRING, "ownerId": NULLABLE, "runId": NULLABLE,
           "parameters": {"type": "object"}, "results": {"type": "array", "items": {"type": "object"}}})
GRANTEES = {"type": "array", "items": obj({"name": STRING, "since": STRING})}
USERS = {JSON: {"schema": obj({"users": GRANTEES, "groups": GRANTEES})}}
SHARED_JOB = {"allOf": [JOB, obj({"sharedSince": STRING, "viaGroup": {
    "type": ["string", "null"], "description": "The group it was shared with you through (null: with you)"}})]}
GROUP = path_param("name", "A group's name", {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"})
NOTIFY = obj({"email": {"type": ["string", "null"]},
              "emailConfirmed": {"type": "boolean", "description": "Its owner opened the link sent to it: "
                                 "notifications go only to a confirmed address"},
              "confirmationSent": {"type": "boolean", "description": "A confirmation link was sent to it now"},
              "mail": {"type": "boolean"},
              "digest": {"type": "boolean"}, "digestHour": {"type": ["integer", "null"]},
              "webhooks": {"type": "boolean"}})


def paths(jobname_schema: Doc) -> Doc:
    token = path_param("token", "The link's secret: <link id>.<signature>",
                       {"type": "string", "pattern": "^[0-9a-f]{32}\\.[0-9a-f]{32}$"})
    link_id = path_param("link_id", "A share link's id", {"type": "string", "pattern": "^[0-9a-f]{32}$"})
    job = [path_param("jobname", "A job definition's name", jobname_schema),
           path_param("job_id", "A job's id", ID_SCHEMA)]
    name = path_param("name", "A user's name")
    shared_file = {**file_responses("The shared file"), **errors(403, 404, 410)}
    fields = [query(n, f"As in the body: {n}", {"type": "string"})
              for n in ("entity", "job", "result", "input")]
    return {
        "/share": {
            "post": op("createShareLink", "A signed, expiring link to one of your files", TAG, {
                "201": {"description": "The link (its `url` works without credentials)",
                        "content": {JSON: {"schema": LINK}}},
                **errors(400, 401, 403, 404, 410)}, parameters=fields,
                body={"required": False, "content": {JSON: {"schema": REQUEST}, FORM: {"schema": REQUEST}}}),
            "get": op("listShareLinks", "Your share links (an admin's: everyone's)", TAG, {
                **ok("The links", {JSON: {"schema": obj({"links": {"type": "array", "items": LINK}})}}),
                **errors(401)}),
        },
        "/share/{link_id}": {"parameters": [link_id], "delete": op(
            "revokeShareLink", "Revoke a link (its creator or an admin)", TAG,
            {**ok("The revoked link", {JSON: {"schema": LINK}}), **errors(401, 403, 404)})},
        "/share/{token}": {"parameters": [token], "get": op(
            "getSharedFile", "The shared file, to anyone holding the link", TAG, shared_file, public=True)},
        "/share/{token}/{file_name}": {
            "parameters": [token, path_param("file_name", "The file's name")],
            "get": op("getSharedFileByName", "The shared file, under its name", TAG, shared_file,
                      public=True)},
        "/shared": {"get": op("listSharedJobs", "The jobs shared with you or your groups", TAG, {
            **ok("The jobs", {JSON: {"schema": obj({"jobs": {"type": "array", "items": SHARED_JOB}})}}),
            **errors(401)})},
        "/shared/{jobname}/{job_id}": {"parameters": job, "get": op(
            "getSharedJob", "A job you own or that was shared with you or a group of yours (read-only)", TAG,
            {**ok("The job", {JSON: {"schema": JOB}}), **errors(401, 403, 404)})},
        "/shared/{jobname}/{job_id}/results/{result_id}": {
            "parameters": [*job, path_param("result_id", "A result's id")],
            "get": op("getSharedResult", "A result of a job shared with you", TAG,
                      {**file_responses("The result"), **errors(401, 403, 404)})},
        **_job_shares(job, name),
        "/notifications": {
            "get": op("getNotifications", "Your e-mail address for NOTIFY, and what this server sends", TAG,
                      {**ok("Your settings", {JSON: {"schema": NOTIFY}}), **errors(401)}),
            "put": op("setNotifications", "Set (or, with null, remove) your e-mail address", TAG,
                      {**ok("Your settings", {JSON: {"schema": NOTIFY}}), **errors(400, 401)},
                      body={"required": True, "content": {JSON: {"schema": EMAIL}}}),
        },
    }


def _job_shares(job: list[Doc], name: Doc) -> Doc:
    """Whom a job is shared with: named users and groups (its owner's)."""
    return {
        "/shared/{jobname}/{job_id}/users": {"parameters": job, "get": op(
            "listJobShares", "Whom your job is shared with (users and groups)", TAG, {
                **ok("The users and groups", USERS), **errors(401, 403, 404)})},
        "/shared/{jobname}/{job_id}/users/{name}": {
            "parameters": [*job, name],
            "put": op("shareJob", "Share your job read-only with a user", TAG,
                      {**ok("The users", USERS), **errors(400, 401, 403, 404)}),
            "delete": op("unshareJob", "Stop sharing your job with a user", TAG,
                         {**ok("The users", USERS), **errors(401, 403, 404)})},
        "/shared/{jobname}/{job_id}/groups/{name}": {
            "parameters": [*job, GROUP],
            "put": op("shareJobWithGroup", "Share your job read-only with a group's members", TAG,
                      {**ok("The users and groups", USERS), **errors(400, 401, 403, 404)},
                      description="Every member, now and later, may read it; membership is read at each "
                                  "access. A group nobody belongs to yet is allowed."),
            "delete": op("unshareJobWithGroup", "Stop sharing your job with a group", TAG,
                         {**ok("The users and groups", USERS), **errors(400, 401, 403, 404)})},
    }
