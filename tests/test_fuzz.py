"""OpenAPI-driven fuzzing: schemathesis generates valid and invalid requests from the service's own
/v1/openapi.json and sends them to a real `entityflow serve`; no 5xx, every answer as documented.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
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
    statuses.update(send_hostile_bytes(served.url))
    total = sum(sent.values())
    assert total >= 1000, f"only {total} requests were generated: {dict(sent)}"
    assert not [status for status in statuses if status >= 500], dict(statuses)
    assert "unhandled error" not in served.log


# What an OpenAPI document cannot describe: header bytes that are not UTF-8, and dates at the
# edges of the calendar (valid ISO 8601 that overflows once moved to UTC).
HEADER_BYTES = st.binary(min_size=1, max_size=40).filter(
    lambda b: not set(b) & set(b"\r\n\0") and b.strip() == b
)
EDGE_DATES = st.builds(
    lambda year, hour, offset: (
        f"{year:04d}-{1 if year == 1 else 12:02d}-"
        f"{1 if year == 1 else 31:02d}T{hour:02d}:30:00{offset:+03d}:00"
    ),
    st.sampled_from([1, 9999]),
    st.integers(0, 23),
    st.integers(-14, 14),
)


def send_hostile_bytes(url: str) -> Counter[int]:
    statuses: Counter[int] = Counter()
    address = url.removeprefix("http://").split(":")

    def send(data: bytes) -> int:
        with socket.create_connection((address[0], int(address[1])), timeout=30) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        statuses[status] += 1
        return status

    @given(key=HEADER_BYTES, published_at=EDGE_DATES, batch=st.booleans())
    @settings(max_examples=150, deadline=None, database=None, derandomize=True)
    def check(key: bytes, published_at: str, batch: bool) -> None:
        post = {"publication": "BBC", "content": "x", "published_at": published_at}
        body = orjson.dumps([post] if batch else post)
        path = b"/v1/posts/batch" if batch else b"/v1/posts"
        head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path
        head += b"Content-Length: %d\r\nConnection: close\r\n" % len(body)
        assert send(head + b"X-API-Key: " + key + b"\r\n\r\n" + body) in (400, 401)
        status = send(head + b"X-API-Key: " + API_KEY.encode() + b"\r\n\r\n" + body)
        assert status in (202, 422), published_at

    check()
    return statuses
