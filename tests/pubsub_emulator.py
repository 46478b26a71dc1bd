"""A real Pub/Sub emulator for the tests (a pytest plugin, see conftest.py `pytest_plugins`).

The official emulator (Java, shipped with the Google Cloud CLI as `cloud-pubsub-emulator`) is
started directly, in its own process group, once per session; each test gets topics of its
own, so nothing needs wiping. Where the emulator is missing the tests that need it are
skipped with a loud reason (it cannot be installed from the registries reached here).
`stop()`/`start()` stop and restart it on the same port (acceptance: an outage mid-load).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
PROJECT = "demo-entityflow"


@dataclass
class PubSubEmulator:
    """A running emulator: `host` for PUBSUB_EMULATOR_HOST, `queue()` for ENTITYFLOW_QUEUE."""

    host: str
    log_path: Path
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None
    project: str = PROJECT
    _topics: Iterator[int] = field(default_factory=itertools.count)

    @property
    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def queue(self, name: str = "posts") -> str:
        """A fresh topic's queue DSN: each call names a topic no other test uses."""
        return f"pubsub://{self.project}/{name}-{os.getpid()}-{next(self._topics)}"

    def start(self) -> None:
        port = self.host.rsplit(":", 1)[1]
        command = [str(EMULATOR), "--host=127.0.0.1", f"--port={port}"]
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                command,
                cwd=self.data_dir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"the Pub/Sub emulator did not start:\n{self.log_path.read_text()}")
            time.sleep(0.1)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        """Kill the emulator and its process group (its state goes with it)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def freeze(self) -> None:
        """Stop answering but keep every message (SIGSTOP the process group)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """The session's Pub/Sub emulator process."""
    if not EMULATOR.exists():
        pytest.skip(
            f"NO PUB/SUB EMULATOR: {EMULATOR} is missing; install the Debian package"
            " google-cloud-cli-pubsub-emulator to run the Pub/Sub tests"
        )
    tmp = tmp_path_factory.mktemp("pubsub")
    emulator = PubSubEmulator(f"127.0.0.1:{_free_port()}", tmp / "pubsub-emulator.log", tmp)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def pubsub(pubsub_emulator: PubSubEmulator, monkeypatch: pytest.MonkeyPatch) -> PubSubEmulator:
    """The emulator, answering, with PUBSUB_EMULATOR_HOST set for this test."""
    if pubsub_emulator.process is None or pubsub_emulator.process.poll() is not None:
        pubsub_emulator.start()
    pubsub_emulator.thaw()
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", pubsub_emulator.host)
    return pubsub_emulator
