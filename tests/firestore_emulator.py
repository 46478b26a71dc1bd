"""A real Firestore emulator for the tests (a pytest plugin, see conftest.py `pytest_plugins`).

The official emulator (Java) is started directly, in its own process group, once per session;
each test starts from an empty database. Where its jar is missing, the npm package
`@firestore-emulator/server` stands in (scripts/install-test-deps.sh installs it): it is not
faithful (no atomic batches, no isolated transactions, no transforms of fields inside maps),
so tests that depend on those call `require_faithful()` and are skipped with a loud reason
there. The store's counters are increments inside maps, so today that is every test of it.
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
from typing import Literal

import pytest

ROOT = Path(__file__).parent.parent
JAR = Path(
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
)
NPM_DIR = ROOT / ".cache" / "firestore-emulator"
PROJECT = "demo-entityflow"

# Binds its gRPC server to 127.0.0.1 (the package's own start() binds 0.0.0.0).
_NPM_MAIN = """
const grpc = require("@grpc/grpc-js");
const { FirestoreServer } = require("@firestore-emulator/server");
const emulator = new FirestoreServer();
emulator.server.bindAsync(process.argv[1], grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) { console.error(err); process.exit(1); }
  console.log("ready");
});
"""


@dataclass
class Emulator:
    """A running emulator: `host` for FIRESTORE_EMULATOR_HOST, `project` for the DSN."""

    kind: Literal["official", "npm"]
    host: str
    process: subprocess.Popen[bytes]
    log_path: Path
    project: str = PROJECT
    _projects: Iterator[int] = field(default_factory=itertools.count)

    @property
    def dsn(self) -> str:
        return f"firestore://{self.project}"

    @property
    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def wipe(self) -> None:
        """An empty database for the next test."""
        if self.kind == "official":
            url = f"http://{self.host}/emulator/v1/projects/{self.project}/databases/(default)/documents"
            request = urllib.request.Request(url, method="DELETE")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
        else:
            # The npm emulator has no wipe endpoint: a fresh project is an empty database.
            self.project = f"{PROJECT}-{next(self._projects)}"

    def freeze(self) -> None:
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def require_faithful(self, needs: str) -> None:
        """Skip, loudly, a test that needs what only the official emulator does right."""
        if self.kind != "official":
            pytest.skip(
                f"SKIPPED ON THE NPM FALLBACK EMULATOR: this test needs {needs}, which"
                f" @firestore-emulator/server does not do faithfully; install the official"
                f" emulator ({JAR}) to run it"
            )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(tmp: Path) -> Emulator:
    port = _free_port()
    log_path = tmp / "firestore-emulator.log"
    # TEST_FIRESTORE_EMULATOR=npm tries the fallback on a machine that has the jar.
    if JAR.exists() and os.environ.get("TEST_FIRESTORE_EMULATOR") != "npm":
        command = [
            "java", "-Xmx512m", "-Duser.language=en", "-cp", str(JAR),
            "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
            "start", "--host=127.0.0.1", f"--port={port}",
        ]  # fmt: skip
        kind: Literal["official", "npm"] = "official"
        cwd = None
    elif (NPM_DIR / "node_modules" / "@firestore-emulator" / "server").exists():
        command = ["node", "-e", _NPM_MAIN, f"127.0.0.1:{port}"]
        kind = "npm"
        cwd = NPM_DIR
    else:
        pytest.fail(
            f"no Firestore emulator: neither {JAR} nor {NPM_DIR}/node_modules/@firestore-emulator"
            "/server; run scripts/install-test-deps.sh"
        )
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    emulator = Emulator(kind, f"127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 60
    while not _ready(emulator):
        if process.poll() is not None or time.monotonic() > deadline:
            emulator.stop()
            pytest.fail(f"the {kind} Firestore emulator did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return emulator


def _ready(emulator: Emulator) -> bool:
    if emulator.kind == "npm":
        return "ready" in emulator.log_path.read_text()
    try:
        with urllib.request.urlopen(f"http://{emulator.host}/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The session's emulator process (official, or the npm fallback)."""
    emulator = _start(tmp_path_factory.mktemp("firestore"))
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def firestore(firestore_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator with an empty database, and FIRESTORE_EMULATOR_HOST set for this test."""
    if firestore_emulator.process.poll() is not None:
        pytest.fail(f"the Firestore emulator died:\n{firestore_emulator.log_path.read_text()}")
    # The store increments fields inside maps (so that Firestore need not index every entity
    # key); the npm emulator does not implement transforms on nested fields.
    firestore_emulator.require_faithful("increments of fields inside maps")
    firestore_emulator.thaw()
    firestore_emulator.wipe()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator.host)
    return firestore_emulator
