"""scripts/install-service.sh, run for real inside a throwaway root (--root): the files it
claims, their modes and owners, the enabled unit, a second run changing nothing, uninstall."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from entityflow.config import Settings
from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "install-service.sh"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the script creates users and chowns: root only"),
    pytest.mark.skipif(
        shutil.which("systemctl") is None or shutil.which("systemd-sysusers") is None,
        reason="systemd's tools missing (scripts/install-test-deps.sh installs them)",
    ),
]


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-deps: the venv gets entityflow itself, not a second copy of spaCy and friends.
    command = [str(SCRIPT), "--root", str(root), "--python", sys.executable, *args]
    if "--uninstall" not in args:
        command += ["--pip-args", "--no-deps"]
    return subprocess.run(command, capture_output=True, text=True, timeout=240)


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file outside the venv: contents, or a symlink's target."""
    files: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if relative.startswith("opt/entityflow/venv") or relative.endswith(("-", ".lock")):
            continue
        if path.is_symlink():
            files[relative] = os.readlink(path)
        elif path.is_file():
            files[relative] = path.read_bytes()
    return files


@pytest.mark.slow
def test_install_is_complete_and_idempotent_then_uninstalls(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = run(root)
    assert first.returncode == 0, first.stderr

    users = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()]
    (user,) = [fields for fields in users if fields[0] == "entityflow"]
    assert user[5:] == ["/var/lib/entityflow", "/usr/sbin/nologin"]
    assert int(user[2]) < 1000  # a system user
    groups = [line.split(":") for line in (root / "etc/group").read_text().splitlines()]
    (gid,) = [int(fields[2]) for fields in groups if fields[0] == "entityflow"]

    env_file = root / "etc/entityflow/entityflow.env"
    info = env_file.stat()
    assert (info.st_mode & 0o777, info.st_uid, info.st_gid) == (0o640, 0, gid)
    assert (env_file.parent.stat().st_mode & 0o777) == 0o750
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    (key,) = settings.api_keys
    assert len(key.get_secret_value()) >= 40

    units = root / "etc/systemd/system"
    for unit in ("entityflow.service", "entityflow.socket"):
        assert (units / unit).read_bytes() == (ROOT / "systemd" / unit).read_bytes()
    wants = units / "multi-user.target.wants/entityflow.service"
    assert os.readlink(wants) == "/etc/systemd/system/entityflow.service"
    assert not (units / "sockets.target.wants").exists()

    venv = root / "opt/entityflow/venv"
    assert os.access(venv / "bin/entityflow", os.X_OK)
    where = subprocess.run(
        [venv / "bin/python", "-c", "import entityflow; print(entityflow.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(venv))
    assert (root / "opt/entityflow/docs/operations.md").exists()

    # Again: nothing changes, the key above all; the user is not created twice.
    before = snapshot(root)
    second = run(root)
    assert second.returncode == 0, second.stderr
    assert "kept" in second.stdout
    assert snapshot(root) == before
    assert Settings(_env_file=env_file).api_keys == (key,)  # type: ignore[call-arg]

    with_socket = run(root, "--socket")
    assert with_socket.returncode == 0, with_socket.stderr
    assert (units / "sockets.target.wants/entityflow.socket").is_symlink()

    for _ in range(2):
        removed = run(root, "--uninstall")
        assert removed.returncode == 0, removed.stderr
        assert not (units / "entityflow.service").exists()
        assert not wants.is_symlink()
        assert not (units / "sockets.target.wants/entityflow.socket").is_symlink()
        assert not (root / "opt/entityflow").exists()
        assert env_file.exists()  # settings and keys stay unless --purge

    purged = run(root, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not env_file.parent.exists()
    assert "entityflow:" not in (root / "etc/passwd").read_text()


def test_a_wrong_argument_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(SCRIPT), "--root", str(tmp_path), "--bogus"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "install-service.sh: unknown argument: --bogus (see --help)"
    ]
