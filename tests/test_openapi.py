"""The OpenAPI document is generated from the API's models; docs/openapi.json must follow them."""

from __future__ import annotations

from pathlib import Path

from entityflow.api.schemas import EntitiesQuery
from entityflow.openapi import document, reference
from entityflow.queries import MAX_ROWS
from tests.conftest import make_settings

DOCUMENT = Path(__file__).parent.parent / "docs" / "openapi.json"


def test_the_committed_document_follows_the_models() -> None:
    assert DOCUMENT.read_text() == reference(), "models changed: run `make openapi`"


def test_parameters_come_from_the_query_models(tmp_path: Path) -> None:
    operation = document(make_settings(tmp_path))["paths"]["/v1/entities"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert set(parameters) == set(EntitiesQuery.model_fields)
    assert parameters["limit"]["schema"]["maximum"] == MAX_ROWS
    assert parameters["label"]["explode"] is True


def test_settings_and_the_store_shape_the_document(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_content_chars=1234, protect_reads=True)
    none_yet = document(settings, [])
    post = none_yet["components"]["schemas"]["PostIn"]["properties"]["content"]
    assert post["maxLength"] == 1234
    entities = none_yet["paths"]["/v1/entities"]["get"]
    assert entities["security"] == [{"apiKey": []}] and "401" in entities["responses"]
    publication = entities["parameters"][0]
    assert publication["schema"]["maxItems"] == 0, "no publication is known yet"
    known = document(settings, ["CNN", "BBC"])["paths"]["/v1/entities"]["get"]["parameters"][0]
    assert known["schema"]["items"]["enum"] == ["BBC", "CNN"]
