"""The unit files: systemd's own verifier and security score, the settings the service relies
on, and MemoryDenyWriteExecute= checked by running the real service under the same filter."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from entityflow.config import Settings
from entityflow.dataset import Article
from tests.conftest import API_KEY, ROOT, ServeProcess

UNITS = ROOT / "systemd"
INSTALLED_ENTRYPOINT = "/opt/entityflow/venv/bin/entityflow"
MAX_EXPOSURE = 3.0  # "OK" in systemd-analyze security's scale

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze missing (scripts/install-test-deps.sh installs it)",
)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Every Key=value of a unit file; a key may repeat (systemd appends or resets)."""
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "min": 60, "ms": 0.001}
    number, unit = re.fullmatch(r"(\d+)\s*([a-z]*)", value).groups()  # type: ignore[union-attr]
    return int(number) * units[unit]


@needs_analyze
def test_units_verify_clean(tmp_path: Path) -> None:
    # verify also checks that ExecStart's program exists: point it at the entityflow this
    # checkout installed, which is what install-service.sh puts at INSTALLED_ENTRYPOINT.
    entrypoint = Path(sys.executable).parent / "entityflow"
    assert entrypoint.exists()
    for unit in ("entityflow.service", "entityflow.socket"):
        text = (UNITS / unit).read_text()
        (tmp_path / unit).write_text(text.replace(INSTALLED_ENTRYPOINT, str(entrypoint)))
    assert INSTALLED_ENTRYPOINT in (UNITS / "entityflow.service").read_text()
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(p) for p in sorted(tmp_path.iterdir()))],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "entityflow" not in result.stdout + result.stderr


@needs_analyze
def test_security_exposure_is_ok() -> None:
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            str(UNITS / "entityflow.service"),
        ],
        capture_output=True,
        text=True,
    )
    found = re.search(
        r"Overall exposure level for entityflow.service: ([\d.]+) (\w+)", result.stdout
    )
    assert found, result.stdout + result.stderr
    exposure, verdict = float(found[1]), found[2]
    print(f"systemd-analyze security: exposure {exposure} {verdict}")
    assert exposure <= MAX_EXPOSURE and verdict in ("OK", "SAFE"), result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_service_settings_the_design_relies_on() -> None:
    unit = unit_settings(UNITS / "entityflow.service")
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["KillMode"] == ["mixed"]
    # systemd must not kill a drain that is within its own timeout.
    assert seconds(unit["TimeoutStopSec"][0]) > Settings().drain_timeout
    assert unit["Restart"] == ["on-failure"]
    assert unit["StartLimitBurst"] and unit["StartLimitIntervalSec"]
    assert seconds(unit["WatchdogSec"][0]) >= 10
    assert unit["EnvironmentFile"] == ["/etc/entityflow/entityflow.env"]
    assert "ENTITYFLOW_DATA_DIR=%S/entityflow" in unit["Environment"]
    assert unit["StateDirectory"] == ["entityflow"]
    assert unit["User"] == ["entityflow"]
    assert unit["ExecStart"] == [f"{INSTALLED_ENTRYPOINT} serve"]
    for key, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "MemoryDenyWriteExecute": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    }.items():
        assert unit[key] == [expected], key
    assert unit["SystemCallFilter"][0] == "@system-service"
    socket_unit = unit_settings(UNITS / "entityflow.socket")
    assert socket_unit["ListenStream"] == ["127.0.0.1:8080"]


# What systemd's MemoryDenyWriteExecute=yes installs (src/shared/seccomp-util.c,
# seccomp_memory_deny_write_execute): EPERM for a mapping both writable and executable, for
# making any mapping executable after the fact, and for executable shared memory. Loaded at
# interpreter start through sitecustomize, it binds the process and every child it starts.
MDWE_FILTER = """
import ctypes, errno

class _Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

_lib = ctypes.CDLL("libseccomp.so.2")
_lib.seccomp_init.restype = ctypes.c_void_p
_lib.seccomp_init.argtypes = [ctypes.c_uint32]
_lib.seccomp_rule_add_array.argtypes = [
    ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Cmp)]
_lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
_lib.seccomp_load.argtypes = [ctypes.c_void_p]
_ALLOW, _EPERM, _MASKED_EQ = 0x7FFF0000, 0x00050000 | errno.EPERM, 7
_WRITE, _EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
_ctx = _lib.seccomp_init(_ALLOW)
for _name, _mask in (("mmap", _WRITE | _EXEC), ("mprotect", _EXEC),
                     ("pkey_mprotect", _EXEC), ("shmat", _SHM_EXEC)):
    _cmp = _Cmp(2, _MASKED_EQ, _mask, _mask)
    _nr = _lib.seccomp_syscall_resolve_name(_name.encode())
    assert _lib.seccomp_rule_add_array(_ctx, _EPERM, _nr, 1, ctypes.byref(_cmp)) == 0
assert _lib.seccomp_load(_ctx) == 0
"""


def _seccomp_available() -> bool:
    import ctypes.util

    return ctypes.util.find_library("seccomp") is not None


@pytest.fixture
def mdwe_path(tmp_path: Path) -> Path:
    if not _seccomp_available():
        pytest.skip("libseccomp missing (it comes with systemd)")
    site = tmp_path / "mdwe"
    site.mkdir()
    (site / "sitecustomize.py").write_text(MDWE_FILTER)
    return site


def test_the_filter_refuses_writable_executable_memory(mdwe_path: Path) -> None:
    probe = (
        "import mmap\nmmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
    )
    refused = subprocess.run(
        [sys.executable, "-c", probe], env={"PYTHONPATH": str(mdwe_path)}, capture_output=True
    )
    assert refused.returncode != 0 and b"PermissionError" in refused.stderr
    allowed = subprocess.run([sys.executable, "-c", probe], capture_output=True)
    assert allowed.returncode == 0, allowed.stderr


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _seccomp_mode(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return re.search(r"^Seccomp:\s*(\d)", status, re.M)[1]  # type: ignore[index]


@pytest.mark.slow
def test_service_runs_under_memory_deny_write_execute(
    serve_process: Callable[..., ServeProcess], mdwe_path: Path, articles: list[Article]
) -> None:
    """spaCy, thinc, numpy, uvloop, aiohttp and SQLite need no writable+executable memory."""
    server = serve_process(PYTHONPATH=str(mdwe_path))
    family = [server.process.pid, *_descendants(server.process.pid)]
    assert len(family) >= 3, family  # serve, the forkserver, a worker
    assert {_seccomp_mode(pid) for pid in family} == {"2"}  # every one filtered

    chosen = articles[:10]
    body = [{"id": a.id, "publication": a.publication, "content": a.content} for a in chosen]
    request = urllib.request.Request(
        server.url + "/v1/posts/batch",
        data=json.dumps(body).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202
    deadline = time.monotonic() + 120
    entities = 0
    for article in chosen:
        while True:
            with urllib.request.urlopen(f"{server.url}/v1/posts/{article.id}") as response:
                post = json.load(response)
            if post["status"] == "processed" or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert post["status"] == "processed", server.log
        entities += len(post["entities"])
    assert entities > 0
    server.signal()
    assert server.wait(60) == 0, server.log
    assert "Traceback" not in server.log
