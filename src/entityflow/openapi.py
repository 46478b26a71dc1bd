"""The OpenAPI 3.1 document served at /v1/openapi.json (checked against the server by tests)."""

from __future__ import annotations

from typing import Any

from entityflow import __version__
from entityflow.config import Settings
from entityflow.entities import ALL_LABELS
from entityflow.models import ID_PATTERN


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str, retry: bool = False) -> dict[str, Any]:
    response = _json(_ref("Error"), description)
    if retry:
        response["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return response


def _errors(*statuses: int) -> dict[str, Any]:
    described = {
        400: "Malformed JSON",
        401: "Missing or wrong X-API-Key",
        404: "Not found",
        408: "The request body did not arrive within ENTITYFLOW_BODY_TIMEOUT",
        413: "Body too large, or a batch larger than the whole queue",
        415: "Wrong Content-Type",
        422: "Validation error: which field, why",
        503: "Queue full, draining or store unavailable; retry after Retry-After seconds",
    }
    return {str(status): _error(described[status], status == 503) for status in statuses}


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description, **extra}


_DATE = {"type": "string", "format": "date"}
_LABEL = {"type": "string", "enum": sorted(ALL_LABELS)}
_PUBLICATIONS = _query(
    "publication",
    {"type": "array", "items": {"type": "string"}},
    "Publication name; repeat for several; none means all.",
    style="form",
    explode=True,
)
_SINCE = _query("since", _DATE, "First date, inclusive.")
_UNTIL = _query("until", _DATE, "Last date, inclusive.")


def document(settings: Settings) -> dict[str, Any]:
    post_schema = {
        "type": "object",
        "required": ["publication", "content"],
        "properties": {
            "publication": {"type": "string", "minLength": 1, "maxLength": 200},
            "content": {"type": "string", "minLength": 1, "maxLength": settings.max_content_chars},
            "id": {"type": "string", "pattern": ID_PATTERN},
            "title": {"type": ["string", "null"]},
            "url": {"type": ["string", "null"]},
            "author": {"type": ["string", "null"]},
            "published_at": {
                "type": ["string", "null"],
                "description": "ISO 8601 date or datetime; a datetime without zone is UTC.",
            },
        },
    }
    entity = {
        "type": "object",
        "required": ["text", "label", "key", "posts", "mentions"],
        "properties": {
            "text": {"type": "string"},
            "label": {"type": "string"},
            "key": {"type": "string"},
            "posts": {"type": "integer"},
            "mentions": {"type": "integer"},
        },
    }
    security: list[dict[str, list[str]]] = [{"apiKey": []}]
    read_security = security if settings.protect_reads else []
    read_errors = _errors(401, 422, 503) if settings.protect_reads else _errors(422, 503)
    return {
        "openapi": "3.1.0",
        "info": {"title": "entityflow", "version": __version__},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": {
                "Post": post_schema,
                "Entity": entity,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "details"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "details": {},
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            "/v1/posts": {
                "post": {
                    "summary": "Submit one post",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("Post")}},
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "required": ["id", "status"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "status": {"const": "accepted"},
                                },
                            },
                            "Accepted: the post will be counted once",
                        ),
                        **_errors(400, 401, 408, 413, 415, 422, 503),
                    },
                }
            },
            "/v1/posts/batch": {
                "post": {
                    "summary": "Submit up to 1000 posts; all or none are accepted",
                    "security": security,
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": _ref("Post"), "maxItems": 1000}
                            },
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {
                        "202": _json(
                            {
                                "type": "object",
                                "required": ["accepted", "ids"],
                                "properties": {
                                    "accepted": {"type": "integer"},
                                    "ids": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                            "Accepted",
                        ),
                        **_errors(400, 401, 408, 413, 415, 422, 503),
                    },
                }
            },
            "/v1/posts/{id}": {
                "get": {
                    "summary": "One post and its entities",
                    "security": read_security,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["id", "publication", "date", "status", "entities"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "publication": {"type": "string"},
                                    "date": _DATE,
                                    "status": {"enum": ["queued", "processed"]},
                                    "entities": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["text", "label", "key", "count"],
                                            "properties": {
                                                "text": {"type": "string"},
                                                "label": {"type": "string"},
                                                "key": {"type": "string"},
                                                "count": {"type": "integer"},
                                            },
                                        },
                                    },
                                },
                            },
                            "The post",
                        ),
                        **_errors(404, 503),
                        **(_errors(401) if settings.protect_reads else {}),
                    },
                }
            },
            "/v1/publications": {
                "get": {
                    "summary": "Publications with post counts and date span",
                    "security": read_security,
                    "responses": {
                        "200": _json(
                            {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["name", "posts", "first_date", "last_date"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "posts": {"type": "integer"},
                                        "first_date": _DATE,
                                        "last_date": _DATE,
                                    },
                                },
                            },
                            "Publications, by name",
                        ),
                        **_errors(503),
                        **(_errors(401) if settings.protect_reads else {}),
                    },
                }
            },
            "/v1/entities": {
                "get": {
                    "summary": "Top entities",
                    "security": read_security,
                    "parameters": [
                        _PUBLICATIONS,
                        _query(
                            "label",
                            {"type": "array", "items": _LABEL},
                            "Entity label; repeat for several.",
                            style="form",
                            explode=True,
                        ),
                        _SINCE,
                        _UNTIL,
                        _query(
                            "limit",
                            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
                            "How many entities.",
                        ),
                        _query(
                            "sort", {"enum": ["posts", "mentions"]}, "Rank by posts or mentions."
                        ),
                        _query("format", {"enum": ["json", "csv"]}, "csv for a CSV download."),
                    ],
                    "responses": {
                        "200": {
                            "description": "Top entities",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["entities"],
                                        "properties": {
                                            "entities": {"type": "array", "items": _ref("Entity")}
                                        },
                                    }
                                },
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        **read_errors,
                    },
                }
            },
            "/v1/entities/timeline": {
                "get": {
                    "summary": "One entity over time, one series per publication",
                    "security": read_security,
                    "parameters": [
                        _query("label", _LABEL, "Entity label.", required=True),
                        _query(
                            "key", {"type": "string", "minLength": 1}, "Entity key.", required=True
                        ),
                        _PUBLICATIONS,
                        _query("interval", {"enum": ["day", "week", "month"]}, "Bucket size."),
                        _SINCE,
                        _UNTIL,
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["label", "key", "interval", "series"],
                                "properties": {
                                    "label": {"type": "string"},
                                    "key": {"type": "string"},
                                    "interval": {"enum": ["day", "week", "month"]},
                                    "omitted": {
                                        "type": "integer",
                                        "description": "Publications left out past the cap",
                                    },
                                    "series": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["publication", "points"],
                                            "properties": {
                                                "publication": {"type": "string"},
                                                "points": {
                                                    "type": "array",
                                                    "items": {
                                                        "type": "object",
                                                        "required": ["date", "posts", "mentions"],
                                                        "properties": {
                                                            "date": _DATE,
                                                            "posts": {"type": "integer"},
                                                            "mentions": {"type": "integer"},
                                                        },
                                                    },
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                            "Series; buckets start on the day, the Monday or the 1st",
                        ),
                        **read_errors,
                    },
                }
            },
            "/healthz": {
                "get": {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}}
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: model loaded, store reachable, not draining",
                    "responses": {
                        "200": {"description": "Ready"},
                        "503": {"description": "Not ready"},
                    },
                }
            },
        },
    }
