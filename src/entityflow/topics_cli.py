"""What `entityflow topics recount` and `entityflow topics suggest` do: plain functions."""

from __future__ import annotations

from collections.abc import Callable

from entityflow.config import Settings
from entityflow.stores import open_store
from entityflow.stores.base import Progress
from entityflow.suggest import Suggestion, suggestions


async def recount(
    settings: Settings, start: Callable[[int], Progress]
) -> tuple[int, str, str | None]:
    """Rebuild the topic counts under the settings' rules: (posts, new version, old version).

    `start(total posts)` gives the progress callback. The rules are read (and refused when
    bad) before the store is touched.
    """
    rule = settings.topic_rule
    store = open_store(settings.store_dsn, firestore_shards=settings.firestore_shards)
    await store.open()
    try:
        before = await store.topics_version()
        total = sum(p.posts for p in await store.publications())
        progress = start(total)
        posts = await store.recount_topics(rule, progress)
    finally:
        await store.close()
    return posts, rule.version, before


async def suggest(settings: Settings, min_share: float) -> list[Suggestion]:
    store = open_store(settings.store_dsn, firestore_shards=settings.firestore_shards)
    await store.open()
    try:
        return await suggestions(store, min_share)
    finally:
        await store.close()
