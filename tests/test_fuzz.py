"""OpenAPI-driven fuzzing: schemathesis generates valid and invalid requests from the service's own
/v1/openapi.json and sends them to a real `entityflow serve`; no 5xx, every answer as documented,
and (with every check on) nothing the document allows refused, nothing it forbids accepted.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY, ServeProcess

# Per operation, for the fuzzing phase; the coverage phase sends its own fixed set.
CLI_EXAMPLES = 25
# With every operation of the API, both phases send well over this many requests.
MIN_CASES = 500


@pytest.mark.slow
def test_schemathesis_every_check_coverage_and_fuzzing(
    serve_process: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    """`schemathesis run --checks all` with its coverage and fuzzing phases, as a user would.

    Two posts are stored first, so the document names publications a query may use.
    """
    served = serve_process(ENTITYFLOW_QUEUE_SIZE="200")
    http = requests.Session()
    # Two publications, so that GET /v1/compare (two or more) has valid queries too.
    for name in ("BBC", "CNN"):
        post = {"publication": name, "content": "Angela Merkel visited Paris."}
        answer = http.post(served.url + "/v1/posts", json=post, headers={"X-API-Key": API_KEY})
        assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    while len(http.get(served.url + "/v1/publications").json()) < 2:
        assert time.monotonic() < deadline, "the first post was never stored"
        time.sleep(0.1)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        served.url + "/v1/openapi.json",
        "--checks=all",
        "--phases=coverage,fuzzing",
        f"--header=X-API-Key:{API_KEY}",
        f"--max-examples={CLI_EXAMPLES}",
        "--seed=1",
        "--no-shrink",
        f"--report-dir={tmp_path / 'reports'}",
    ]
    root = Path(__file__).parent.parent
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    # In a temporary directory: schemathesis keeps its own files in the working directory.
    result = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]
    generated = re.search(r"(\d+) generated", result.stdout)
    assert generated and int(generated.group(1)) >= MIN_CASES, result.stdout[-3000:]
    statuses = send_hostile_bytes(served.url)
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
