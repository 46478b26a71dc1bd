"""A Debian root file system with entityflow installed, booted under a real systemd by
systemd-nspawn, for tests/test_systemd_real.py.

The recipe is the one a new operator follows (issue 15): mmdebstrap a minimal bookworm with
systemd, run scripts/install-service.sh inside it, boot it sharing the host's network and drive
its systemd from outside with nsenter. Two layers are cached, keyed by a hash of what made
them: the bare system (mmdebstrap) and the system with the service and its dependencies
installed. Each session copies the second and installs this checkout into the copy again, so
the cache never holds the code under test and is never written to by a test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

SUITE = "bookworm"
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates"
MMDEBSTRAP = ("mmdebstrap", "--quiet", "--variant=minbase", f"--include={PACKAGES}", SUITE)
# Outside the checkout, so fresh clones (CI) share it the way they share pip's cache.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "entityflow-tests"
# What the installed layer is made from: a change to any of these builds it again.
INSTALL_INPUTS = ("pyproject.toml", "scripts/install-service.sh", "systemd/entityflow.sysusers")
STALE_AFTER = 3600.0  # other keys' entries older than this are removed
CHECKOUT = "/src/entityflow"
UNIT = "entityflow.service"


def tools_missing() -> list[str]:
    return [tool for tool in ("mmdebstrap", "systemd-nspawn", "nsenter") if not shutil.which(tool)]


def _remove(path: Path) -> None:
    # --one-file-system: never follow into a bind mount left behind by an interrupted run.
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _cached(kind: str, key: str, build: Any) -> Path:
    """CACHE/KIND-KEY, made by `build(path)` into a temporary folder and renamed into place."""
    target = CACHE / f"{kind}-{key}"
    if target.is_dir():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=CACHE))
    try:
        build(work / "root")
        try:
            (work / "root").rename(target)
        except OSError:
            if not target.is_dir():  # else a concurrent session finished first: keep theirs
                raise
    finally:
        _remove(work)
    for old in CACHE.glob(f"{kind}-*"):
        if old != target and time.time() - old.stat().st_mtime > STALE_AFTER:
            _remove(old)
    return target


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def _pip_options() -> list[str]:
    """nspawn options that point pip inside at the registry pip uses here.

    The host's pip configuration files, every local path they or PIP_* variables name (the CA
    bundle, local indexes and wheel folders), bound read-only at the same place, and the PIP_*
    variables themselves.
    """
    config = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True
    ).stdout
    values = [line.partition("=")[2].strip("'\"") for line in config.splitlines()]
    variables = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    candidates = [
        "/etc/pip.conf",
        "/etc/xdg/pip",
        str(Path.home() / ".config" / "pip"),
        str(Path.home() / ".pip"),
    ]
    for value in [*values, *variables.values()]:
        for word in value.split():
            path = re.sub(r"^file://", "", word).rstrip("/")
            # A local index's pages link to files beside it: bind the folder that holds both.
            candidates.append(str(Path(path).parent) if path.endswith("/simple") else path)
    binds = {p for p in candidates if p.startswith("/") and Path(p).exists()}
    return [f"--bind-ro={path}" for path in sorted(binds)] + [
        f"--setenv={name}={value}" for name, value in sorted(variables.items())
    ]


def _nspawn_run(root: Path, *argv: str) -> None:
    """Run argv once inside root (no boot), with this checkout at CHECKOUT."""
    result = subprocess.run(
        [
            "systemd-nspawn",
            "--quiet",
            f"--directory={root}",
            "--register=no",
            "--keep-unit",
            "--pipe",
            f"--bind-ro={ROOT}:{CHECKOUT}",
            *_pip_options(),
            *argv,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"{argv} in {root} failed:\n{result.stdout}\n{result.stderr}"


def _debootstrap(path: Path) -> None:
    result = subprocess.run([*MMDEBSTRAP, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"mmdebstrap failed:\n{result.stderr}"


def installed_root(work: Path) -> Path:
    """A bookworm where this checkout is installed as a service, mounted at work/root.

    The cached layer is the lower layer of an overlay, so a session writes only what it
    changes (work/upper) and the cache stays as it was built; unmount with `release(work)`.
    """
    base_key = _digest(" ".join(MMDEBSTRAP).encode())
    base = _cached("base", base_key, _debootstrap)

    def install(path: Path) -> None:
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(path)], check=True)
        _nspawn_run(path, f"{CHECKOUT}/scripts/install-service.sh")

    key = _digest(base_key.encode(), *((ROOT / name).read_bytes() for name in INSTALL_INPUTS))
    layer = _cached("installed", key, install)
    root, upper, scratch = work / "root", work / "upper", work / "scratch"
    for folder in (root, upper, scratch):
        folder.mkdir()
    options = f"lowerdir={layer},upperdir={upper},workdir={scratch}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(root)], check=True)
    # This checkout's code, over whatever version the cached layer was built from.
    _nspawn_run(
        root,
        f"{CHECKOUT}/scripts/install-service.sh",
        "--pip-args",
        "--no-deps --force-reinstall",
    )
    return root


def release(work: Path) -> None:
    """Unmount the session's overlay (if mounted) and remove what the session wrote."""
    root = work / "root"
    if root.is_mount():
        # Lazy: it can stay busy for a moment after the container's processes are gone.
        subprocess.run(["umount", "--lazy", str(root)], check=True)
    _remove(work)


@dataclass
class Container:
    """A booted container: its root on the host and its PID 1, driven through nsenter."""

    root: Path
    process: subprocess.Popen[bytes]
    init_pid: int
    log_path: Path

    def run(
        self, *argv: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"{argv}: {result.returncode}\n{result.stderr}"
        return result

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, *properties: str, unit: str = UNIT) -> dict[str, str]:
        output = self.systemctl("show", unit, *(f"--property={p}" for p in properties)).stdout
        return dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)

    def write(self, path: str, text: str) -> None:
        """Write a file inside the container (its /run is its own tmpfs)."""
        self.run("mkdir", "-p", str(Path(path).parent))
        self.run("sh", "-c", f"cat > {path} <<'EOF'\n{text}EOF\n")

    def cursor(self) -> str:
        output = self.run("journalctl", "--show-cursor", "-n0", "--quiet").stdout
        return output.strip().removeprefix("-- cursor: ")

    def journal(self, after: str, unit: str = UNIT) -> list[dict[str, Any]]:
        """The journal entries of `unit` (and of systemd about it) since the cursor `after`."""
        output = self.run(
            "journalctl", f"--unit={unit}", f"--after-cursor={after}", "--output=json"
        ).stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def messages(self, after: str) -> list[str]:
        return [str(entry.get("MESSAGE", "")) for entry in self.journal(after)]


def boot(root: Path, log_path: Path, timeout: float = 60) -> Container:
    """Boot root's systemd and wait until it has finished starting its units."""
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                f"--directory={root}",
                "--register=no",
                "--keep-unit",
                "--boot",
                "--console=read-only",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    init_pid = None
    while init_pid is None and time.monotonic() < deadline:
        assert process.poll() is None, f"nspawn exited:\n{log_path.read_text(errors='replace')}"
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        if children and Path(f"/proc/{children[0]}/comm").read_text().strip() == "systemd":
            init_pid = int(children[0])
        else:
            time.sleep(0.1)
    assert init_pid is not None, "no systemd in the container"
    container = Container(root, process, init_pid, log_path)
    while time.monotonic() < deadline:
        state = container.run("systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return container
        time.sleep(0.2)
    raise AssertionError(f"the container did not finish booting: {state}")


def shut_down(container: Container) -> None:
    """End the container at once: SIGKILL to its PID 1 ends every process in it.

    Its disk is thrown away after, so nothing needs an orderly shutdown.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(container.init_pid, signal.SIGKILL)
    try:
        container.process.wait(30)
    except subprocess.TimeoutExpired:
        container.process.kill()
        container.process.wait(10)
