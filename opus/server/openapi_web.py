"""The OpenAPI description of the web client's routes (``/web/...``, see ``web_routes``)."""

from __future__ import annotations

from opus.server.openapi_parts import ID_SCHEMA, STRING, Doc, errors

TAG = "Web client"
HTML = {"text/html": {"schema": STRING}}
JOB_ID = ID_SCHEMA


def _page(op_id: str, summary: str, *codes: int, parameters: list[Doc] | None = None) -> Doc:
    """A page: 200 HTML; 401 is the sign-in form (HTML); other errors are HTML pages too."""
    responses = {"200": {"description": "The page (its script then calls the REST API)", "content": HTML},
                 "401": {"description": "Not signed in (or a stale session): the sign-in form",
                         "content": HTML, "headers": {"WWW-Authenticate": {"schema": STRING}}}}
    for code in codes:
        responses[str(code)] = {"description": {403: "Not allowed to this caller", 404: "No such job or definition",
                                                400: "Malformed request"}[code],
                                "content": {**HTML, "text/plain": {"schema": STRING}}}
    op: Doc = {"operationId": op_id, "summary": summary, "tags": [TAG], "responses": responses}
    if parameters:
        op["parameters"] = parameters
    return {"get": op}


def _path(name: str, description: str, schema: Doc | None = None) -> Doc:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or STRING}


def _form(properties: Doc, required: list[str]) -> Doc:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema},
                                          "multipart/form-data": {"schema": schema}}}


def _asset(op_id: str, summary: str) -> Doc:
    any_body = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    return {"get": {
        "operationId": op_id, "summary": summary, "tags": [TAG], "security": [],
        "parameters": [_path("path", "The file's path")],
        "responses": {"200": {"description": "The file", "content": any_body},
                      "206": {"description": "A byte range of it", "content": any_body},
                      "304": {"description": "Not modified"},
                      "416": {"description": "A range beyond the end of the file"},
                      **errors(400),
                      "404": {"description": "No such file", "content": {"text/plain": {"schema": STRING}}}}}}


def paths(jobname_schema: Doc) -> Doc:
    jobname = _path("jobname", "A job definition's name", jobname_schema)
    signin_page = {"description": "The sign-in form, with what went wrong", "content": HTML}
    see_other = {"description": "Signed in (or out): go on to the page", "headers": {
        "Location": {"$ref": "#/components/headers/Location"}, "Set-Cookie": {"schema": STRING}}}
    return {
        "/web/": _page("webDefinitions", "Page: the job definitions the caller may run"),
        "/web/jobs": _page("webAllJobs", "Page: the caller's jobs of every definition"),
        "/web/shared": _page("webShared", "Page: the jobs shared with the caller or its groups (read-only; "
                             "`job`: the one to open, `<jobname>/<job id>`)", parameters=[
            {"name": "job", "in": "query", "required": False, "schema": STRING}]),
        "/web/jobs/{jobname}": _page("webJobs", "Page: the jobs of one definition", 404, parameters=[jobname]),
        "/web/jobs/{jobname}/{job_id}": _page("webJob", "Page: one job", 403, 404, parameters=[
            jobname, _path("job_id", "A job's id", JOB_ID)]),
        "/web/new/{jobname}": _page("webNewJob", "Page: the job form (`from`: prefilled from that job)", 403, 404,
                                    parameters=[jobname, {"name": "from", "in": "query", "required": False,
                                                          "description": "A job to run again", "schema": STRING}]),
        "/web/editor": _page("webEditor", "Page: the job definition editor", parameters=[
            {"name": "name", "in": "query", "required": False, "description": "A definition to start from",
             "schema": STRING}]),
        "/web/admin": _page("webAdmin", "Page: users, definitions and server status (admins)", 403),
        "/web/session": {"get": {
            "operationId": "webSession", "summary": "Who the caller is, and the session's CSRF token", "tags": [TAG],
            "description": "For scripts (uws.js), also on the sites listed in CORS_ORIGINS: send `csrfToken` "
                           "as `X-CSRF-Token` with every state-changing request made with the session cookie.",
            "responses": {"200": {"description": "The caller", "content": {"application/json": {"schema": {
                "type": "object", "properties": {
                    "user": {"type": ["string", "null"]}, "admin": {"type": "boolean"},
                    "anonymous": {"type": "boolean"}, "session": {"type": "boolean"},
                    "csrfToken": {"type": ["string", "null"]}, "expires": {"type": ["string", "null"]},
                    "signin": STRING}}}}}, **errors(401)}}},
        "/web/signin": {
            "get": {"operationId": "webSigninForm", "summary": "Page: the sign-in form", "tags": [TAG], "security": [],
                    "parameters": [{"name": "next", "in": "query", "required": False, "schema": STRING,
                                    "description": "The page to go to once signed in"},
                                   {"name": "signed_out", "in": "query", "required": False, "schema": STRING,
                                    "description": "Say that the user has signed out"}],
                    "responses": {"200": {"description": "The form (it sets the cookie `opus_signin`)",
                                          "content": HTML}}},
            "post": {"operationId": "webSignin", "summary": "Sign in with a user name and token", "tags": [TAG],
                     "security": [],
                     "description": "Needs the form's `_csrf` field and its `opus_signin` cookie. Sets the session "
                                    "cookie `opus_session` (HttpOnly, SameSite=Lax, Secure over https).",
                     "requestBody": _form({"name": STRING, "token": STRING, "next": STRING, "_csrf": STRING},
                                          ["name", "token", "_csrf"]),
                     "responses": {"303": see_other, "400": signin_page, "401": {**signin_page, "headers": {
                         "WWW-Authenticate": {"schema": STRING}}}, "403": signin_page,
                         "413": {"$ref": "#/components/responses/PayloadTooLarge"}}}},
        "/web/signout": {"post": {
            "operationId": "webSignout", "summary": "Sign out (end the session)", "tags": [TAG], "security": [],
            "description": "With a session cookie, the form's `_csrf` field must be the session's CSRF token.",
            "requestBody": _form({"_csrf": STRING}, []),
            "responses": {"303": see_other, **errors(400, 403, 413)}}},
        "/web/static/{path}": _asset("webStatic", "The pages' scripts and styles, and uws.js"),
        "/web/lib/{path}": _asset("webLibrary", "The web client's npm libraries (those package-lock.json lists)"),
    }
