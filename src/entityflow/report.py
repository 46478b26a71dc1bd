"""What `entityflow top` and `entityflow check` print: plain functions over the settings."""

from __future__ import annotations

import asyncio
import os
import tempfile

from entityflow.config import Settings
from entityflow.models import EntityQuery
from entityflow.queries import check_publications
from entityflow.stores import open_store


async def top_table(settings: Settings, query: EntityQuery) -> str:
    store = open_store(settings.store_dsn, firestore_shards=settings.firestore_shards)
    await store.open()
    try:
        check_publications(query.publications, {p.name for p in await store.publications()})
        entities = await store.top_entities(query)
    finally:
        await store.close()
    if not entities:
        return "no entities match"
    rows = [("#", "entity", "label", "posts", "mentions")] + [
        (str(rank), e.text, e.label, f"{e.posts:,}", f"{e.mentions:,}")
        for rank, e in enumerate(entities, start=1)
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    right = {0, 3, 4}
    return "\n".join(
        "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    )


async def run_checks(settings: Settings) -> list[tuple[str, bool, str]]:
    """(part, ok, detail) for the model, the store and the journal directory or the queue."""
    lines = [await asyncio.to_thread(_check_model, settings), await _check_store(settings)]
    if settings.pubsub is None:
        lines.append(await asyncio.to_thread(_check_journal, settings))
    else:
        from entityflow.queues.admin import check

        ok, detail = await check(settings.pubsub)
        lines.append(("queue", ok, detail))
    return lines


def _check_model(settings: Settings) -> tuple[str, bool, str]:
    from entityflow.nlp import load

    try:
        nlp = load(settings.model, settings.pipeline)
    except Exception as error:
        return "model", False, f"{settings.model}: {error}"
    version = nlp.meta.get("version", "?")
    return "model", True, f"{settings.model} {version}, {settings.pipeline}: {nlp.pipe_names}"


async def _check_store(settings: Settings) -> tuple[str, bool, str]:
    try:
        store = open_store(settings.store_dsn, firestore_shards=settings.firestore_shards)
        await asyncio.wait_for(store.open(), 15)
        try:
            await asyncio.wait_for(store.ping(), 15)
            posts = sum(p.posts for p in await store.publications())
        finally:
            await store.close()
    except Exception as error:
        return "store", False, f"{settings.store_dsn}: {error or type(error).__name__}"
    return "store", True, f"{store.description}: {posts:,} posts"


def _check_journal(settings: Settings) -> tuple[str, bool, str]:
    if not settings.journal:
        return "journal", True, "off (ENTITYFLOW_JOURNAL=off): a crash loses queued posts"
    directory = settings.journal_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".check-"):
            pass
    except OSError as error:
        return "journal", False, f"{directory} is not writable: {error.strerror}"
    free = os.statvfs(directory)
    mib = free.f_bavail * free.f_frsize // 2**20
    return "journal", True, f"{directory} writable, {mib:,} MiB free"
