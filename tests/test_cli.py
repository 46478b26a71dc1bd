"""The command line as users meet it: real subprocesses, one clear line per mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from entityflow.models import EntityCount, PostRecord, ProcessedPost
from entityflow.stores.sqlite import SQLiteStore


def run(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("ENTITYFLOW_")
    }
    environment.update({"ENTITYFLOW_DATA_DIR": str(data_dir), **env})
    return subprocess.run(
        [sys.executable, "-m", "entityflow", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.stderr
    for word in words:
        assert word in error_lines[0], result.stderr


def test_check_passes_on_a_working_setup(tmp_path: Path) -> None:
    result = run("check", data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["settings", "ok"],
        ["model", "ok"],
        ["store", "ok"],
        ["journal", "ok"],
    ]
    assert "['ner']" in lines[1]


def test_check_fails_on_an_unusable_model(tmp_path: Path) -> None:
    result = run("check", data_dir=tmp_path, ENTITYFLOW_MODEL="no_such_model")
    assert result.returncode == 1
    assert "model     FAIL no_such_model" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_fails_on_an_unusable_store(tmp_path: Path) -> None:
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not a database" * 100)
    result = run("check", data_dir=tmp_path, ENTITYFLOW_STORE=f"sqlite:///{not_a_db}")
    assert result.returncode == 1
    store_line = next(line for line in result.stdout.splitlines() if line.startswith("store"))
    assert "FAIL" in store_line and "not a database" in store_line


def test_check_fails_on_bad_settings(tmp_path: Path) -> None:
    result = run("check", data_dir=tmp_path, ENTITYFLOW_WORKERS="lots")
    assert result.returncode == 1
    assert result.stdout.startswith("settings  FAIL ENTITYFLOW_WORKERS")


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (("serve", "--port", "http"), {}, ("--port", "http")),
        (("serve",), {"ENTITYFLOW_PIPELINE": "turbo"}, ("ENTITYFLOW_PIPELINE", "fast", "exact")),
        (("serve",), {"ENTITYFLOW_LABELS": "PERSON,PEOPLE"}, ("ENTITYFLOW_LABELS", "PEOPLE")),
        (("serve", "--store", "mysql://x"), {}, ("ENTITYFLOW_STORE", "unknown store", "mysql")),
        (("serve", "--store", "memory://"), {}, ("ENTITYFLOW_STORE", "memory://", "tests only")),
        (("serve", "--workers", "0"), {}, ("ENTITYFLOW_WORKERS",)),
        (
            ("serve",),
            {"ENTITYFLOW_API_KEYS": "0123456789abcdefghij,short"},
            ("ENTITYFLOW_API_KEYS", "key 2 has 5 characters", "at least 16"),
        ),
        (
            ("serve",),
            {"ENTITYFLOW_MAX_CONTENT_CHARS": "2000000"},
            ("ENTITYFLOW_MAX_CONTENT_CHARS", "at most 1000000", "max_length"),
        ),
        (("top", "--limit", "5000"), {}, ("--limit",)),
        (("top", "--since", "March"), {}, ("--since",)),
        (("top", "--publication", "Nope"), {}, ("unknown publication", "Nope")),
        (("nonsense",), {}, ("nonsense",)),
    ],
)
def test_cli_mistakes_give_one_clear_line(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], words: tuple[str, ...]
) -> None:
    assert_one_clear_line(run(*args, data_dir=tmp_path, **env), *words)


def test_serve_on_a_busy_port_says_so(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run("serve", "--port", str(port), data_dir=tmp_path, ENTITYFLOW_WORKERS="1")
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Traceback" not in result.stderr


async def test_top_prints_a_table(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "entityflow.db")
    await store.open()
    await store.write(
        [
            ProcessedPost(
                PostRecord(id=f"t{i}", publication="BBC", content="-", date="2017-03-01"),
                (
                    EntityCount("PERSON", "angela merkel", "Angela Merkel", 2),
                    EntityCount("GPE", "paris", "Paris", 1 + i),
                ),
            )
            for i in range(1500)
        ]
    )
    await store.close()
    result = run("top", "--sort", "mentions", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "#  entity         label   posts   mentions",
        "1  Paris          GPE     1,500  1,125,750",
        "2  Angela Merkel  PERSON  1,500      3,000",
    ]
    only = run("top", "--label", "person", "--publication", "BBC", data_dir=tmp_path)
    assert only.stdout.splitlines()[1].split()[1:3] == ["Angela", "Merkel"]
    empty = run("top", "--since", "2020-01-01", data_dir=tmp_path)
    assert empty.returncode == 0 and empty.stdout.strip() == "no entities match"
