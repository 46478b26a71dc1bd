"""The unit files: systemd's own verifier and security score, the settings the service relies
on, and MemoryDenyWriteExecute= checked by running the real service under the same filter."""

from __future__ import annotations

import json
import os
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
from tests.conftest import ROOT, ServeProcess, descendants

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


# The seccomp filters the unit's sandbox installs, rebuilt with libseccomp so the real service
# can run under them without systemd:
# - MemoryDenyWriteExecute=yes (src/shared/seccomp-util.c, seccomp_memory_deny_write_execute):
#   EPERM for a mapping both writable and executable, for making a mapping executable after
#   the fact and for executable shared memory;
# - SystemCallFilter=@system-service, ~@privileged @resources, setpriority,
#   SystemCallErrorNumber=EPERM: an allow list, every other system call fails with EPERM;
# - RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6: socket() of another family fails.
# Loaded at interpreter start through sitecustomize, they bind the process and its children.
SANDBOX = """
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
_ALLOW = 0x7FFF0000
_EPERM, _EAFNOSUPPORT = 0x00050000 | errno.EPERM, 0x00050000 | errno.EAFNOSUPPORT
_EQ, _GT, _MASKED_EQ = 4, 6, 7
_WRITE, _EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000

def _rule(ctx, action, name, *cmps):
    nr = _lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return  # not a system call on this architecture
    array = (_Cmp * max(1, len(cmps)))(*cmps)
    assert _lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), array) == 0, name

_mdwe = _lib.seccomp_init(_ALLOW)
for _name, _mask in (("mmap", _WRITE | _EXEC), ("mprotect", _EXEC),
                     ("pkey_mprotect", _EXEC), ("shmat", _SHM_EXEC)):
    _rule(_mdwe, _EPERM, _name, _Cmp(2, _MASKED_EQ, _mask, _mask))
assert _lib.seccomp_load(_mdwe) == 0

_families = _lib.seccomp_init(_ALLOW)
for _family in (0, 3, 4, 5, 6, 7, 8, 9):
    _rule(_families, _EAFNOSUPPORT, "socket", _Cmp(0, _EQ, _family, 0))
_rule(_families, _EAFNOSUPPORT, "socket", _Cmp(0, _GT, 10, 0))
assert _lib.seccomp_load(_families) == 0

_allowed = _lib.seccomp_init(_EPERM)
for _name in ALLOWED:
    _rule(_allowed, _ALLOW, _name)
assert _lib.seccomp_load(_allowed) == 0
"""


def _syscalls(group: str) -> set[str]:
    """The system calls of a systemd group, nested groups expanded."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout.splitlines()[1:]
    names: set[str] = set()
    for line in (line.strip() for line in listing):
        if line.startswith("@"):
            names |= _syscalls(line)
        elif line and not line.startswith("#"):
            names.add(line)
    return names


@pytest.fixture
def sandbox_path(tmp_path: Path) -> Path:
    """A directory for PYTHONPATH whose sitecustomize puts Python under the unit's filters."""
    import ctypes.util

    if ctypes.util.find_library("seccomp") is None or shutil.which("systemd-analyze") is None:
        pytest.skip("libseccomp or systemd-analyze missing (scripts/install-test-deps.sh)")
    unit = unit_settings(UNITS / "entityflow.service")
    assert unit["SystemCallFilter"] == ["@system-service", "~@privileged @resources", "setpriority"]
    assert unit["SystemCallErrorNumber"] == ["EPERM"]
    allowed = (
        _syscalls("@system-service") - _syscalls("@privileged") - _syscalls("@resources")
    ) | {"setpriority"}
    site = tmp_path / "sandbox"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"ALLOWED = {sorted(allowed)!r}\n{SANDBOX}")
    return site


@pytest.mark.parametrize(
    ("probe", "error"),
    [
        (
            "import mmap\n"
            "mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)",
            "PermissionError",
        ),
        ("import os\nos.chroot('/')", "PermissionError"),  # @privileged
        ("import os\nos.sched_setaffinity(0, {0})", "PermissionError"),  # @resources
        ("import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW)", "Address family"),
    ],
)
def test_the_sandbox_refuses_what_the_unit_forbids(
    sandbox_path: Path, probe: str, error: str
) -> None:
    refused = subprocess.run(
        [sys.executable, "-c", probe], env={"PYTHONPATH": str(sandbox_path)}, capture_output=True
    )
    assert refused.returncode != 0 and error in refused.stderr.decode(), refused.stderr
    if os.geteuid() == 0:  # outside the sandbox, root may do each of them
        outside = subprocess.run([sys.executable, "-c", probe], capture_output=True)
        assert outside.returncode == 0, outside.stderr


def _seccomp_mode(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return re.search(r"^Seccomp:\s*(\d)", status, re.M)[1]  # type: ignore[index]


@pytest.mark.slow
def test_service_runs_in_the_units_sandbox(
    serve_process: Callable[..., ServeProcess], sandbox_path: Path, articles: list[Article]
) -> None:
    """spaCy, thinc, numpy, uvloop, aiohttp and SQLite need no writable+executable memory, no
    system call outside @system-service's allowed part, no other address family."""
    server = serve_process(PYTHONPATH=str(sandbox_path))
    family = [server.process.pid, *descendants(server.process.pid)]
    assert len(family) >= 3, family  # serve, the forkserver, a worker
    assert {_seccomp_mode(pid) for pid in family} == {"2"}  # every one filtered

    chosen = articles[:10]
    body = [{"id": a.id, "publication": a.publication, "content": a.content} for a in chosen]
    assert server.post_batch(body) == 202
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
    # The workers could lower their priority: the unit allows setpriority back.
    assert "keep the service's priority" not in server.log
