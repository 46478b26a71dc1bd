"""OpenAPI-driven fuzzing: schemathesis generates valid and invalid requests from the service's own
/v1/openapi.json and sends them to a real `entityflow serve`; no 5xx, every answer as documented.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import API_KEY, ServeProcess

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation and mode; with every operation of the API this is well over 1,000 requests.
EXAMPLES = 130


@pytest.mark.slow
def test_generated_requests_get_documented_answers(
    serve_process: Callable[..., ServeProcess],
) -> None:
    served = serve_process(ENTITYFLOW_QUEUE_SIZE="200")
    schema = schemathesis.openapi.from_url(served.url + "/v1/openapi.json")
    http = requests.Session()
    sent: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                headers = {"X-API-Key": API_KEY, **(case.headers or {})}
                response = case.call(base_url=served.url, session=http, headers=headers)
                sent[case.operation.label] += 1
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # An operation without parameters or body has nothing to make invalid.
                assert mode is GenerationMode.NEGATIVE, operation.label
    total = sum(sent.values())
    assert total >= 1000, f"only {total} requests were generated: {dict(sent)}"
    assert not [status for status in statuses if status >= 500], dict(statuses)
    assert "unhandled error" not in served.log
