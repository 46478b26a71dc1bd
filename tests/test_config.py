import os
import re
from pathlib import Path

import click
import pytest
from pydantic_settings import EnvSettingsSource

from entityflow.cli import main
from entityflow.config import Settings, ensure_api_key, load_settings

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme() -> None:
    missing = [
        f"ENTITYFLOW_{name.upper()}"
        for name in Settings.model_fields
        if f"`ENTITYFLOW_{name.upper()}`" not in README
    ]
    assert not missing, f"add these to README.md's Settings table: {missing}"


def settings_rows() -> set[str]:
    """The variables in the first column of the README's Settings table."""
    section = README.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(ENTITYFLOW_[A-Z0-9_]+)` \|", section, re.MULTILINE))


def test_every_setting_has_its_variable_and_a_readme_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each field is read from its ENTITYFLOW_* variable, which has a Settings table row."""
    rows = settings_rows()
    prefix = Settings.model_config.get("env_prefix", "")
    no_variable, no_row = [], []
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias or field.alias
        variable = (alias if isinstance(alias, str) else f"{prefix}{name}").upper()
        monkeypatch.setenv(variable, "probe")
        value, _, _ = EnvSettingsSource(Settings).get_field_value(field, name)
        monkeypatch.delenv(variable)
        if value != "probe":
            no_variable.append(f"{name} ({variable})")
        if variable not in rows:
            no_row.append(variable)
    assert not no_variable, f"settings not read from their variable: {no_variable}"
    assert not no_row, f"add rows to README.md's Settings table: {no_row}"


def test_every_readme_settings_row_is_a_setting() -> None:
    prefix = Settings.model_config.get("env_prefix", "")
    known = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    assert not settings_rows() - known, "README's Settings table names unknown variables"


def test_every_cli_option_has_an_environment_variable() -> None:
    # Settings options name their ENTITYFLOW_* variable; the rest get click's automatic
    # ENTITYFLOW_<COMMAND>_<OPTION> through the group's auto_envvar_prefix.
    assert main.context_settings["auto_envvar_prefix"] == "ENTITYFLOW"
    for name, command in main.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                assert str(param.envvar).startswith("ENTITYFLOW_"), (name, param.name)


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENTITYFLOW_PORT", "9000")
    monkeypatch.setenv("ENTITYFLOW_WORKERS", "3")
    settings = load_settings(port=9100, workers=None, data_dir=tmp_path)
    assert (settings.port, settings.worker_count) == (9100, 3)
    assert settings.store_dsn == f"sqlite:///{tmp_path}/entityflow.db"


def test_api_keys_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENTITYFLOW_API_KEYS", "alpha-secret-0123456, beta-secret-0123456")
    settings = Settings()
    assert [key.get_secret_value() for key in settings.api_keys] == [
        "alpha-secret-0123456",
        "beta-secret-0123456",
    ]
    assert "secret" not in repr(settings) and "secret" not in str(settings.model_dump())


def test_a_created_key_is_kept_private_and_reused(tmp_path: Path) -> None:
    settings, created = ensure_api_key(Settings(data_dir=tmp_path))
    assert created and settings.api_keys[0].get_secret_value() == created
    assert (tmp_path / "api-key").stat().st_mode & 0o777 == 0o600
    again, created_again = ensure_api_key(Settings(data_dir=tmp_path))
    assert created_again is None
    assert again.api_keys[0].get_secret_value() == created


def test_the_data_directory_is_created_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)
    try:
        ensure_api_key(Settings(data_dir=tmp_path / "new" / "data"))
    finally:
        os.umask(old)
    assert (tmp_path / "new" / "data").stat().st_mode & 0o777 == 0o700
