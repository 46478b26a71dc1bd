"""OpenAPI-driven fuzzing: schemathesis generates valid and invalid requests from the service's own
/v1/openapi.json and sends them to a real `entityflow serve`; no 5xx, every answer as documented,
and (with every check on) nothing the document allows refused, nothing it forbids accepted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

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

    One post is stored first, so the document names a publication a query may use.
    """
    served = serve_process(ENTITYFLOW_QUEUE_SIZE="200")
    http = requests.Session()
    post = {"publication": "BBC", "content": "Angela Merkel visited Paris."}
    answer = http.post(served.url + "/v1/posts", json=post, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 202, answer.text
    deadline = time.monotonic() + 60
    while not http.get(served.url + "/v1/publications").json():
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
    assert "unhandled error" not in served.log
