"""The service under a real systemd: a Debian container booted with systemd-nspawn, the unit
installed by scripts/install-service.sh with its full hardening, driven with systemctl.

One container serves the module (tests/nspawn.py builds and caches it); each test starts from
the service running, the socket stopped and no test drop-ins. ENTITYFLOW_TEST_DROPIN adds a
drop-in to the unit for the whole module, e.g. "[Service]\\nRestart=no": that is how each test
here was shown to fail when the behaviour it checks is broken (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from entityflow.dataset import Article
from tests import nspawn
from tests.conftest import free_port

# A cold cache builds the root file system inside the first test's setup (about 2-3 min).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

UNIT = nspawn.UNIT
ENV_FILE = "etc/entityflow/entityflow.env"
DROPINS = ("/run/systemd/system/entityflow.service.d", "/run/systemd/system/entityflow.socket.d")
WATCHDOG_SEC = 4
LOAD = 64  # posts sent before a stop or a kill: two batches of 32 for the one worker


@dataclass
class Service:
    container: nspawn.Container
    url: str
    key: str
    cursor: str  # the journal before this test

    def show(self, *properties: str, unit: str = UNIT) -> dict[str, str]:
        return self.container.show(*properties, unit=unit)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.container.systemctl(*args, check=check)

    def messages(self) -> list[str]:
        return self.container.messages(self.cursor)

    def request(self, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"X-API-Key": self.key, "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        is_json = raw[:1] in (b"{", b"[")
        return status, json.loads(raw) if is_json else raw.decode()

    def send(self, articles: list[Article], tag: str) -> list[str]:
        posts = [{**article.as_post(), "id": f"{tag}-{i}"} for i, article in enumerate(articles)]
        status, body = self.request("/v1/posts/batch", posts)
        assert status == 202, body
        return list(body["ids"])

    def metric(self, name: str) -> float:
        _, text = self.request("/metrics")
        match = re.search(rf"^{name} (\S+)$", text, re.M)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))

    def wait_processed(self, ids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(ids)
        while waiting and time.monotonic() < deadline:
            waiting = [
                i for i in waiting if self.request(f"/v1/posts/{i}")[1].get("status") != "processed"
            ]
            if waiting:
                time.sleep(0.5)
        assert not waiting, f"{len(waiting)} of {len(ids)} posts not processed: {waiting[:5]}"

    def wait_restarted(self, old_pid: str, timeout: float = 90) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.show("ActiveState", "SubState", "MainPID", "NRestarts", "Result")
            if state["ActiveState"] == "active" and state["MainPID"] not in ("0", old_pid):
                return state
            time.sleep(0.2)
        raise AssertionError(f"not restarted: {state}\n" + "\n".join(self.messages()))


def stored_ids(root: Path, ids: list[str]) -> set[str]:
    """The ids the service's SQLite file holds, read from outside while it is stopped."""
    path = root / "var/lib/entityflow/entityflow.db"
    # immutable: no -wal/-shm files made by root in the service's directory.
    with sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True) as db:
        marks = ",".join("?" * len(ids))
        return {row[0] for row in db.execute(f"SELECT id FROM posts WHERE id IN ({marks})", ids)}


def configure(root: Path, port: int) -> str:
    """Settings for the test: a free port, one worker, JSON logs; returns the API key."""
    env_path = root / ENV_FILE
    text = re.sub(r"(?m)^ENTITYFLOW_PORT=.*$", f"ENTITYFLOW_PORT={port}", env_path.read_text())
    text += "ENTITYFLOW_WORKERS=1\nENTITYFLOW_LOG_FORMAT=json\nENTITYFLOW_LOG_LEVEL=DEBUG\n"
    env_path.write_text(text)
    socket_dropin = root / "etc/systemd/system/entityflow.socket.d/test-port.conf"
    socket_dropin.parent.mkdir(parents=True, exist_ok=True)
    socket_dropin.write_text(f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n")
    mutation = os.environ.get("ENTITYFLOW_TEST_DROPIN")
    if mutation:  # sorts after every drop-in a test adds, so it wins
        service_dropin = root / "etc/systemd/system/entityflow.service.d/zz-mutation.conf"
        service_dropin.parent.mkdir(parents=True, exist_ok=True)
        service_dropin.write_text(mutation.replace("\\n", "\n") + "\n")
    match = re.search(r"(?m)^ENTITYFLOW_API_KEYS=([^,\n]+)", text)
    assert match, "install-service.sh wrote no API key"
    return match.group(1)


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[nspawn.Container, str, str]]:
    missing = nspawn.tools_missing()
    if missing or os.geteuid() != 0:
        reason = f"needs root and {missing} (scripts/install-test-deps.sh installs them)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    work = Path(tempfile.mkdtemp(prefix="entityflow-nspawn-"))
    try:
        root = nspawn.installed_root(work)
        port = free_port()
        key = configure(root, port)
        container = nspawn.boot(root, tmp_path_factory.mktemp("nspawn") / "console.log")
        try:
            yield container, f"http://127.0.0.1:{port}", key
        finally:
            nspawn.shut_down(container)
    finally:
        nspawn.release(work)


@pytest.fixture
def service(booted: tuple[nspawn.Container, str, str]) -> Service:
    """The service running, with the unit as installed: no socket, no test drop-ins."""
    container, url, key = booted
    leftover = container.run("ls", *DROPINS, check=False).stdout.strip()
    container.systemctl("stop", "entityflow.socket")
    if leftover:
        container.run("rm", "-rf", *DROPINS)
        container.systemctl("daemon-reload")
        container.systemctl("stop", UNIT)
    container.systemctl("reset-failed", UNIT, check=False)
    container.systemctl("start", UNIT)
    return Service(container, url, key, container.cursor())


def add_dropin(service: Service, name: str, text: str) -> None:
    service.container.write(f"{DROPINS[0]}/{name}.conf", text)
    service.systemctl("daemon-reload")


def test_start_returns_once_readyz_answers(service: Service) -> None:
    service.systemctl("stop", UNIT)
    service.systemctl("start", UNIT)  # Type=notify: returns on READY=1
    # At once, no retry: READY=1 before the model is loaded would fail here.
    status, body = service.request("/readyz", timeout=5)
    assert (status, body["ready"]) == (200, True), body
    assert service.show("ActiveState", "SubState") == {
        "ActiveState": "active",
        "SubState": "running",
    }


def test_status_line_in_systemctl_status(service: Service, articles: list[Article]) -> None:
    ids = service.send(articles[:10], "status")
    service.wait_processed(ids)
    pattern = r'Status: "queue \d+, \d+ batches in NLP, [\d.]+ posts/s, (\d+) processed"'
    deadline = time.monotonic() + 15  # STATUS= is refreshed every 5 s
    while time.monotonic() < deadline:
        output = service.systemctl("status", UNIT, check=False).stdout
        match = re.search(pattern, output)
        if match and int(match.group(1)) >= len(ids):
            return
        time.sleep(0.5)
    raise AssertionError(f"no status line counting {len(ids)} posts:\n{output}")


def test_stop_mid_load_drains_every_post(service: Service, articles: list[Article]) -> None:
    ids = service.send(articles[:LOAD], "stop")
    assert service.metric("entityflow_posts_processed_total") < len(ids), "not mid-load"
    service.systemctl("stop", UNIT)
    state = service.show("Result", "ExecMainStatus", "ActiveState")
    assert state == {"Result": "success", "ExecMainStatus": "0", "ActiveState": "inactive"}
    missing = set(ids) - stored_ids(service.container.root, ids)
    assert not missing, f"{len(missing)} accepted posts not stored by the drain"
    messages = service.messages()
    # Workers, forkserver and resource tracker are gone before the main process exits, and
    # quietly (no traceback, no "leaked semaphore" from the tracker).
    noise = ("SIGKILL", "Killing process", "Traceback", "leaked")
    assert not [m for m in messages if any(word in m for word in noise)], messages
    assert f"{UNIT}: Deactivated successfully." in messages, messages


def test_kill_mid_load_restarts_and_loses_nothing(
    service: Service, articles: list[Article]
) -> None:
    before = service.show("MainPID", "NRestarts")
    ids = service.send(articles[:LOAD], "kill")
    assert service.metric("entityflow_posts_processed_total") < len(ids), "not mid-load"
    # systemd may report EIO for a process of the unit that exits as the others die; what
    # counts is what follows: a new main process.
    service.systemctl("kill", "--signal=KILL", UNIT, check=False)
    after = service.wait_restarted(before["MainPID"])
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    service.wait_processed(ids)
    assert any("unfinished post(s) recovered" in m for m in service.messages())


def test_watchdog_restarts_a_wedged_service(service: Service) -> None:
    add_dropin(service, "watchdog", f"[Service]\nWatchdogSec={WATCHDOG_SEC}\n")
    service.systemctl("restart", UNIT)  # WATCHDOG_USEC is given at start
    before = service.show("MainPID", "NRestarts")
    wedged_at = time.time()
    service.systemctl("kill", "--kill-who=main", "--signal=STOP", UNIT)
    after = service.wait_restarted(before["MainPID"], timeout=WATCHDOG_SEC + 60)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    timeouts = [
        int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        for entry in service.container.journal(service.cursor)
        if "Watchdog timeout" in str(entry.get("MESSAGE"))
    ]
    assert timeouts, "\n".join(service.messages())
    # Pings stop with the process; systemd aborts it at most one period later (+ slack for
    # a busy machine).
    assert timeouts[0] - wedged_at <= WATCHDOG_SEC + 3


def test_socket_activation(service: Service) -> None:
    service.systemctl("stop", UNIT)
    service.systemctl("start", "entityflow.socket")
    assert service.show("ActiveState")["ActiveState"] == "inactive"
    # A connection to the socket starts the service and is answered once it is ready.
    status, body = service.request("/readyz", timeout=120)
    assert (status, body["ready"]) == (200, True), body
    assert service.show("ActiveState", "TriggeredBy") == {
        "ActiveState": "active",
        "TriggeredBy": "entityflow.socket",
    }
    assert any("(socket activation)" in m for m in service.messages())


def test_journal_holds_structured_lines(service: Service) -> None:
    service.systemctl("restart", UNIT)  # a whole stop and start in the journal
    main_pid = int(service.show("MainPID")["MainPID"])
    entries = [
        entry
        for entry in service.container.journal(service.cursor)
        if entry.get("SYSLOG_IDENTIFIER") == "entityflow"  # every process of the unit
    ]
    lines = [json.loads(entry["MESSAGE"]) for entry in entries]  # each line one JSON object
    assert lines and all(
        {"time", "level", "logger", "message", "pid"} <= set(line) for line in lines
    )
    assert any(line["message"].startswith("entityflow listening on") for line in lines)
    # A worker's own line, relayed through the main process.
    worker = [x for x in lines if x["logger"] == "entityflow.nlp" and x["pid"] != main_pid]
    assert worker, lines


def test_reload_refused_and_restart_keeps_connections(
    service: Service, articles: list[Article]
) -> None:
    # No ExecReload=: settings change with a restart (docs/operations.md).
    refused = service.systemctl("reload", UNIT, check=False)
    assert refused.returncode != 0 and "not applicable" in refused.stderr
    service.systemctl("stop", UNIT)
    service.systemctl("start", "entityflow.socket", UNIT)
    old_pid = service.show("MainPID")["MainPID"]
    ids = service.send(articles[:LOAD], "restart")
    failures: list[str] = []
    answered = 0
    done = threading.Event()

    def probe() -> None:
        nonlocal answered
        while not done.is_set():
            try:
                service.request("/healthz", timeout=120)
                answered += 1
            except OSError as error:  # refused or reset: the socket did not hold it
                failures.append(repr(error))
            time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        service.systemctl("restart", UNIT)  # drains the old process, returns on READY=1
    finally:
        done.set()
        prober.join(130)
    assert service.show("MainPID")["MainPID"] != old_pid
    assert not failures and answered > 0, failures
    messages = service.messages()
    assert not [m for m in messages if "recovered" in m], "the old process left posts behind"
    service.wait_processed(ids, timeout=10)
