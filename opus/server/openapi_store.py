"""The OpenAPI description of the result store (``/store...``, see ``store_routes``)."""

from __future__ import annotations

from opus.server.openapi_parts import ID_SCHEMA, STRING, Doc, errors

TAG = "Result store"
ENTITY_ID = ID_SCHEMA


def _file() -> Doc:
    body = {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    return {
        "200": {"description": "The file, with its content type, `Content-Length` and `Digest`", "content": body},
        "206": {"description": "The requested byte range (a `Range` request)", "content": body},
        "304": {"description": "Not modified since `If-Modified-Since`"},
        "416": {"description": "The `Range` asked for lies beyond the end of the file"},
    }


def paths() -> Doc:
    entity = {"name": "entity_id", "in": "path", "required": True, "description": "An entity's id",
              "schema": ENTITY_ID}
    rng = {"name": "Range", "in": "header", "required": False, "schema": STRING,
           "description": "A byte range, e.g. `bytes=0-1023`"}
    return {
        "/store": {"get": {
            "operationId": "getStoreFile", "summary": "An entity's file, by id", "tags": [TAG],
            "parameters": [{"name": "ID", "in": "query", "required": True, "schema": ENTITY_ID,
                            "description": "The entity's id"}, rng],
            "responses": {**_file(), **errors(400, 401, 403, 404, 410)}}},
        "/store/{entity_id}": {
            "parameters": [entity],
            "get": {"operationId": "describeEntity", "summary": "What is known of an entity (JSON)", "tags": [TAG],
                    "responses": {"200": {"description": "Checksum, size, type, origin, the jobs that used it",
                                          "content": {"application/json": {"schema": {"type": "object"}}}},
                                  **errors(401, 403, 404)}}},
        "/store/{entity_id}/{file_name}": {
            "parameters": [entity, {"name": "file_name", "in": "path", "required": True, "schema": STRING,
                                    "description": "The entity's file name"}],
            "get": {"operationId": "getStoreFileByName", "summary": "An entity's file, under its name",
                    "tags": [TAG], "parameters": [rng],
                    "responses": {**_file(), **errors(401, 403, 404, 410)}}},
    }
