"""The command line: thin click commands over plain functions."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from entityflow.config import Settings, ensure_api_key, load_settings

T = TypeVar("T")


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a mistake in settings or arguments into one line on stderr and exit status 2."""
    try:
        yield
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            name = ".".join(str(part) for part in problem["loc"])
            raise click.UsageError(f"setting {name} (ENTITYFLOW_{name.upper()}): {problem['msg']}")
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def settings_from(**flags: Any) -> Settings:
    with user_errors():
        return load_settings(**flags)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ENTITYFLOW"})
@click.version_option(package_name="entityflow")
def main() -> None:
    """Which entities each publication talks about most, and how that changes over time."""


@main.command()
@click.option("--host", envvar="ENTITYFLOW_HOST", help="Address to listen on [127.0.0.1].")
@click.option("--port", envvar="ENTITYFLOW_PORT", type=int, help="Port to listen on [8080].")
@click.option("--store", envvar="ENTITYFLOW_STORE", help="sqlite:///PATH or firestore://PROJECT[/DB].")
@click.option("--workers", envvar="ENTITYFLOW_WORKERS", type=int, help="NLP processes [cores].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
def serve(**flags: Any) -> None:
    """Run the service until SIGTERM or SIGINT, then drain and exit."""
    from entityflow.logs import setup_logging
    from entityflow.server import serve as run_server

    settings = settings_from(**flags)
    with user_errors():
        settings, created = ensure_api_key(settings)
    setup_logging(settings.log_level, settings.log_format)
    key_file = settings.data_dir / "api-key"
    if created:
        click.echo(f"Created an API key (kept in {key_file}):\n  {created}", err=True)
    elif key_file.exists() and not os.environ.get("ENTITYFLOW_API_KEYS"):
        click.echo(f"Using the API key kept in {key_file}", err=True)
    try:
        status = run_async(run_server(settings))
    except OSError as error:
        click.echo(f"entityflow: cannot start: {error}", err=True)
        sys.exit(1)
    sys.exit(status)


@main.command()
@click.option("--publication", "publications", multiple=True, help="Repeat for several.")
@click.option("--label", "labels", multiple=True, help="PERSON, ORG, GPE, … Repeat for several.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First date, inclusive.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last date, inclusive.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--sort", type=click.Choice(["posts", "mentions"]), default="posts", show_default=True)
@click.option("--store", envvar="ENTITYFLOW_STORE", help="Store to read [the serve default].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
def top(
    publications: tuple[str, ...],
    labels: tuple[str, ...],
    since: Any,
    until: Any,
    limit: int,
    sort: str,
    **flags: Any,
) -> None:
    """Top entities as a table, read straight from the store."""
    from entityflow.models import EntityQuery
    from entityflow.report import top_table

    settings = settings_from(**flags)
    query = EntityQuery(
        publications=publications,
        labels=tuple(label.upper() for label in labels),
        since=since.date().isoformat() if since else None,
        until=until.date().isoformat() if until else None,
        limit=limit,
        sort=sort,  # type: ignore[arg-type]
    )
    with user_errors():
        click.echo(run_async(top_table(settings, query)))


@main.command()
@click.option("--store", envvar="ENTITYFLOW_STORE", help="Store to check [the serve default].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
def check(**flags: Any) -> None:
    """Check settings, model, store and journal: one line each."""
    from entityflow.report import run_checks

    try:
        settings: Settings | None = load_settings(**flags)
        lines = [("settings", True, "ok")]
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        name = ".".join(str(part) for part in first["loc"])
        settings, lines = None, [("settings", False, f"ENTITYFLOW_{name.upper()}: {first['msg']}")]
    if settings is not None:
        lines.extend(run_async(run_checks(settings)))
    for part, ok, detail in lines:
        click.echo(f"{part:<9} {'ok  ' if ok else 'FAIL'} {detail}")
    sys.exit(0 if all(ok for _, ok, _ in lines) else 1)
