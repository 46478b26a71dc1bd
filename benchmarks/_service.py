"""Shared by the durability benchmarks: a real `entityflow serve` on loopback, its process tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

API_KEY = "bench-key-0123456789"


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path

    def tree(self) -> list[int]:
        """The service's pid and every descendant's (NLP workers, forkserver, trackers)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                with suppress(OSError):
                    todo.extend(int(child) for child in task.read_text().split())
        return found

    def rss_mib(self, whole_tree: bool = True) -> float:
        """Resident memory of the whole tree (or of the main process alone), MiB."""
        total = 0
        for pid in self.tree() if whole_tree else [self.process.pid]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the main process (not its NLP workers)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (all label values)."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name) and not line.startswith("#") and line[len(name)] in " {"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(**env: str) -> Iterator[Served]:
    """`entityflow serve` with ENTITYFLOW_* overrides in a fresh data directory."""
    with tempfile.TemporaryDirectory(prefix="entityflow-bench-") as data:
        port = free_port()
        environment = {
            **os.environ,
            "ENTITYFLOW_PORT": str(port),
            "ENTITYFLOW_DATA_DIR": data,
            "ENTITYFLOW_API_KEYS": API_KEY,
            "ENTITYFLOW_LOG_LEVEL": "WARNING",
            **env,
        }
        log = open(Path(data) / "serve.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [sys.executable, "-m", "entityflow", "serve"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        served = Served(process, f"http://127.0.0.1:{port}", Path(data))
        try:
            deadline = time.monotonic() + 180
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"serve did not start:\n{(Path(data) / 'serve.log').read_text()}"
                    )
                try:
                    with urllib.request.urlopen(served.url + "/readyz", timeout=2):
                        break
                except OSError:
                    time.sleep(0.2)
            yield served
        finally:
            process.terminate()
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
