"""The OpenAPI 3.1 document at /v1/openapi.json, generated from the API's pydantic models.

Only the paths table (api/routes.py) is written by hand; every schema comes from the model
the handler validates into or answers with (FastAPI's openapi/utils.py is the model for this
assembly). docs/openapi.json is this document for the default settings; a test fails when it
falls behind the models (`make openapi` rewrites it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from entityflow import __version__
from entityflow.config import Settings

if TYPE_CHECKING:
    from entityflow.api.routes import Route

REF = "#/components/schemas/{model}"
DESCRIBED = {
    400: "Malformed JSON",
    401: "Missing or wrong X-API-Key",
    404: "Not found",
    408: "The request body did not arrive within ENTITYFLOW_BODY_TIMEOUT",
    413: "Body too large, or a batch larger than the whole queue",
    415: "Wrong Content-Type",
    422: "Validation error: which field, why",
    503: "Queue full, draining or store unavailable; retry after Retry-After seconds",
}
Mode = Literal["validation", "serialization"]


def document(settings: Settings, publications: list[str] | None = None) -> dict[str, Any]:
    """The document for these settings; `publications` (the store's) bound the parameter."""
    from entityflow.api.routes import ROUTES
    from entityflow.api.schemas import ErrorBody

    routes = [route for route in ROUTES if route.documented]
    wanted: list[tuple[type[BaseModel], Mode]] = [(ErrorBody, "serialization")]
    for route in routes:
        if route.body is not None:
            wanted.append((route.body, "validation"))
        if route.response is not None:
            wanted.append((route.response, "serialization"))
    keys, top = models_json_schema(wanted, ref_template=REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    # The content limit is a setting, checked through the validation context.
    schemas["PostIn"]["properties"]["content"]["maxLength"] = settings.max_content_chars
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation = _operation(route, settings, keys, publications)
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "entityflow", "version": __version__},
        "components": {
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": schemas,
        },
        "paths": paths,
    }


def reference() -> str:
    """The document for the default settings, as docs/openapi.json holds it."""
    return json.dumps(document(Settings.model_construct()), indent=2, ensure_ascii=False) + "\n"


def _operation(
    route: Route,
    settings: Settings,
    keys: dict[Any, dict[str, Any]],
    publications: list[str] | None,
) -> dict[str, Any]:
    from entityflow.api.schemas import ErrorBody

    secured = route.access == "write" or (route.access == "read" and settings.protect_reads)
    operation: dict[str, Any] = {"summary": route.summary}
    if route.access is not None:
        operation["security"] = [{"apiKey": []}] if secured else []
    parameters = _path_parameters(route)
    if route.query is not None:
        parameters += _query_parameters(route.query, publications)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        content = {"application/json": {"schema": keys[route.body, "validation"]}}
        content.update({kind: {"schema": {"type": "string"}} for kind in route.body_types})
        operation["requestBody"] = {"required": True, "content": content}
    responses: dict[str, Any] = {}
    if route.response is not None:
        content = {"application/json": {"schema": keys[route.response, "serialization"]}}
        content.update({kind: {"schema": {"type": "string"}} for kind in route.answer_types})
        for status in (route.status, *route.also):
            responses[str(status)] = {"description": route.summary, "content": content}
    errors = set(route.errors) | ({401} if secured else set())
    error = {"application/json": {"schema": keys[ErrorBody, "serialization"]}}
    for status in sorted(errors):
        answer: dict[str, Any] = {"description": DESCRIBED[status], "content": error}
        if status == 503:
            answer["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        responses[str(status)] = answer
    operation["responses"] = responses
    return operation


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    parameters = []
    for name in route.patterns:
        schema: dict[str, Any] = {"type": "string", "pattern": rf"^{route.patterns[name]}$"}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(
    model: type[BaseModel], publications: list[str] | None
) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        description = prop.pop("description", "")
        prop.pop("title", None)
        if name == "publication" and publications is not None:
            prop["items"] = _known_publications(prop["items"], publications)
            if not publications:
                prop["maxItems"] = 0
        parameter: dict[str, Any] = {"name": name, "in": "query", "schema": prop}
        if description:
            parameter["description"] = description
        if name in required:
            parameter["required"] = True
        if prop.get("type") == "array":
            parameter.update(style="form", explode=True)
        parameters.append(parameter)
    return parameters


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query string cannot say null: an optional parameter is one left out."""
    prop = dict(prop)
    branches = [branch for branch in prop.get("anyOf", []) if branch != {"type": "null"}]
    if "anyOf" in prop and len(branches) == 1:
        del prop["anyOf"]
        prop.update(branches[0])
    if prop.get("default", 0) is None:
        del prop["default"]
    return prop


def _known_publications(items: dict[str, Any], publications: list[str]) -> dict[str, Any]:
    """A named publication must be one the store knows (the service answers 422 otherwise)."""
    if not publications:
        return items
    return {**items, "enum": sorted(publications)}
