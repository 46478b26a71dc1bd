"""The systemd protocols against real sockets: sd_notify to a datagram socket the test owns,
and socket activation of a real `entityflow serve`."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from entityflow.dataset import Article
from entityflow.notify import Notifier, forget_systemd, listen_sockets
from tests.conftest import API_KEY, ServeProcess, free_port


@dataclass
class Message:
    at: float
    fields: dict[str, str]


@dataclass
class NotifySocket:
    """A bound AF_UNIX datagram socket, as systemd's, collecting what arrives."""

    address: str
    sock: socket.socket
    messages: list[Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def collect(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            parsed = dict(line.split("=", 1) for line in data.decode().splitlines())
            with self.lock:
                self.messages.append(Message(time.monotonic(), parsed))

    def snapshot(self) -> list[Message]:
        with self.lock:
            return list(self.messages)

    def wait_for(
        self, test: Callable[[Message], bool], timeout: float, after: float = 0.0
    ) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.snapshot():
                if message.at >= after and test(message):
                    return message
            time.sleep(0.05)
        raise AssertionError(f"no such message in {timeout}s; got {self.snapshot()}")

    def pings(self, since: float, until: float = float("inf")) -> list[float]:
        return [m.at for m in self.snapshot() if "WATCHDOG" in m.fields and since <= m.at < until]


def _bind(path_or_abstract: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = path_or_abstract
    sock.bind("\0" + name[1:] if name.startswith("@") else name)
    return sock


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """An abstract-namespace socket ("@..."), the form systemd itself uses in containers."""
    address = f"@entityflow-test-{uuid.uuid4().hex}"
    sock = _bind(address)
    listener = NotifySocket(address, sock)
    thread = threading.Thread(target=listener.collect, daemon=True)
    thread.start()
    yield listener
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    thread.join(5)


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _post(url: str, articles: list[Article]) -> None:
    body = b"\n".join(
        json.dumps({"id": a.id, "publication": a.publication, "content": a.content}).encode()
        for a in articles
    )
    request = urllib.request.Request(
        url + "/v1/posts/batch",
        data=body,
        headers={"X-API-Key": API_KEY, "Content-Type": "application/x-ndjson"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202


def test_notifier_sends_to_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    receiver = _bind(path)
    receiver.settimeout(5)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"}, pid=7)
    assert notifier.enabled and notifier.watchdog_interval == 1.5
    assert notifier.ready("up")
    assert receiver.recv(4096) == b"READY=1\nSTATUS=up"
    assert notifier.extend_timeout(2.5, "draining")
    assert receiver.recv(4096) == b"EXTEND_TIMEOUT_USEC=2500000\nSTATUS=draining"
    receiver.close()
    # systemd gone: the service carries on.
    assert not notifier.watchdog()
    notifier.close()


def test_watchdog_is_for_the_pid_systemd_named() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "41"}
    assert Notifier.from_environ(env, pid=42).watchdog_interval is None
    assert Notifier.from_environ(env, pid=41).watchdog_interval == 0.5
    assert not Notifier.from_environ({}).enabled
    assert not Notifier.from_environ({}).ready("up")
    assert listen_sockets({"LISTEN_PID": "41", "LISTEN_FDS": "1"}, pid=42) == []
    environ = {**env, "LISTEN_FDS": "1", "LISTEN_PID": "41", "PATH": "/bin"}
    forget_systemd(environ)
    assert environ == {"PATH": "/bin"}


@pytest.mark.slow
def test_ready_status_watchdog_stopping(
    serve_process: Callable[..., ServeProcess],
    notify_socket: NotifySocket,
    articles: list[Article],
) -> None:
    watchdog_usec = 4_000_000
    server = serve_process(
        wait=False,
        NOTIFY_SOCKET=notify_socket.address,
        WATCHDOG_USEC=str(watchdog_usec),
        ENTITYFLOW_DRAIN_TIMEOUT="240",
    )
    ready = notify_socket.wait_for(lambda m: m.fields.get("READY") == "1", timeout=120)
    # READY=1 means the port is bound, the model loaded and the store answering.
    assert _get(server.url + "/readyz") == 200
    assert "queue 0" in ready.fields["STATUS"]
    assert not [m for m in notify_socket.snapshot() if m.at < ready.at and "WATCHDOG" in m.fields]

    _post(server.url, articles[:20])
    notify_socket.wait_for(
        lambda m: "20 processed" in m.fields.get("STATUS", ""), timeout=120, after=ready.at
    )
    # Pings at half of WATCHDOG_USEC: never as far apart as the watchdog's limit.
    first = notify_socket.wait_for(lambda m: "WATCHDOG" in m.fields, timeout=30).at
    time.sleep(7)
    pings = notify_socket.pings(first)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 3, pings
    assert all(0.9 * watchdog_usec / 2e6 < gap < watchdog_usec / 1e6 for gap in gaps), gaps

    # A drain with work left asks systemd for more stop time as it progresses.
    _post(server.url, articles[20:60])
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(240) == 0, server.log
    stopping = notify_socket.wait_for(
        lambda m: m.fields.get("STOPPING") == "1", timeout=5, after=signalled
    )
    assert stopping.fields["STATUS"].startswith("draining")
    extend = notify_socket.wait_for(lambda m: "EXTEND_TIMEOUT_USEC" in m.fields, 5, stopping.at)
    assert int(extend.fields["EXTEND_TIMEOUT_USEC"]) > 0
    assert extend.fields["STATUS"].startswith("draining: ")


@pytest.mark.slow
def test_watchdog_stops_while_the_writer_is_wedged(
    serve_process: Callable[..., ServeProcess],
    notify_socket: NotifySocket,
    articles: list[Article],
) -> None:
    server = serve_process(NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="2000000")
    notify_socket.wait_for(lambda m: "WATCHDOG" in m.fields, timeout=30)
    # Another process takes SQLite's write lock: the service's next store write blocks in
    # SQLite's busy wait (10 s a try), as a hung disk or store would block it.
    blocker = sqlite3.connect(server.data_dir / "entityflow.db", timeout=30, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        _post(server.url, articles[:1])
        stalled = notify_socket.wait_for(
            lambda m: m.fields.get("STATUS", "").startswith("stalled: a store write"), timeout=60
        )
        time.sleep(4)
        assert notify_socket.pings(stalled.at - 0.01) == []
        assert server.process.poll() is None
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    resumed = notify_socket.wait_for(lambda m: "WATCHDOG" in m.fields, timeout=30, after=stalled.at)
    assert resumed.at > stalled.at + 4
    assert "pipeline stalled, no watchdog pings until it moves: a store write" in server.log
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0, server.log


@pytest.mark.slow
def test_socket_activation_holds_connections_until_ready(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", free_port()), backlog=16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # What systemd does between fork and exec: the socket at fd 3, LISTEN_PID = the new pid.
    launcher = (
        "import os, sys\n"
        f"os.dup2({fd}, 3)\n"
        f"os.close({fd})\n"
        "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'entityflow', 'serve'])\n"
    )
    env = {
        **os.environ,
        "ENTITYFLOW_DATA_DIR": str(tmp_path / "data"),
        "ENTITYFLOW_API_KEYS": API_KEY,
        "ENTITYFLOW_WORKERS": "1",
        # Not this port: the inherited socket wins over the settings.
        "ENTITYFLOW_PORT": str(free_port()),
    }
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", launcher],
            pass_fds=(fd,),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    listener.close()
    try:
        # Connected while the model still loads: the kernel holds it in the backlog.
        with socket.create_connection(("127.0.0.1", port), timeout=120) as client:
            client.sendall(b"GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
            answer = client.recv(4096)
        assert answer.split(b"\r\n")[0].endswith(b" 200 OK"), answer
        assert "socket activation" in log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
