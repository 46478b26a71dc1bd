"""The operator's topic rules file (TOML): read, checked, refused with its line and reason.

[merge]            # canonical = [aliases]; a merge across labels relabels
"PERSON:donald trump" = ["PERSON:trump", "ORG:trump"]

[block]            # never a topic
entities = ["ORG:source"]
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from entityflow.entities import ALL_LABELS, normalise
from entityflow.topics import Entity, OperatorRules, TopicRule

_TOML_LINE = re.compile(r"at line (\d+)")


class RulesError(ValueError):
    """A rules file that cannot be used: where and why, in one line."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"topics rules {source}, line {line}: {reason}")
        self.source, self.line, self.reason = source, line, reason


def default_path(data_dir: Path) -> Path:
    return data_dir / "topics.toml"


def load_rule(path: Path | None, data_dir: Path) -> TopicRule:
    """The rule under the rules file at `path`, or DATA_DIR/topics.toml when that exists."""
    if path is None:
        path = default_path(data_dir)
        if not path.exists():
            return TopicRule()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RulesError(str(path), 0, f"cannot be read: {error}") from None
    return TopicRule(parse_rules(text, str(path)))


def parse_rules(text: str, source: str = "<rules>") -> OperatorRules:
    lines = text.splitlines()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = _TOML_LINE.search(str(error))
        # "(at end of document)": the last line.
        line = int(found.group(1)) if found else max(len(lines), 1)
        raise RulesError(source, line, f"not valid TOML: {str(error).split(' (at')[0]}") from None

    def fail(needle: str, reason: str) -> RulesError:
        return RulesError(source, _line_of(lines, needle), reason)

    for name in data:
        if name not in ("merge", "block"):
            raise fail(name, f"unknown section {name!r}; known: [merge], [block]")
    merge = _merges(data.get("merge", {}), fail)
    block = _blocks(data.get("block", {}), fail)
    canonical = json.dumps(
        [sorted(merge.items()), sorted(block)], ensure_ascii=False, separators=(",", ":")
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:12] if merge or block else "none"
    return OperatorRules(merge=merge, block=frozenset(block), digest=digest)


def _merges(section: Any, fail: Any) -> dict[Entity, Entity]:
    if not isinstance(section, dict):
        raise fail("merge", "[merge] must be a table of canonical = [aliases]")
    merge: dict[Entity, Entity] = {}
    for name, aliases in section.items():
        canonical = _entity(name, fail)
        if not isinstance(aliases, list) or not aliases:
            raise fail(name, f'{name!r} must be a list of one or more "LABEL:key" strings')
        for alias_name in aliases:
            alias = _entity(alias_name, fail)
            # An alias may be listed twice in a file: its canonical's line says which time.
            if alias == canonical:
                raise fail(name, f"{alias_name!r} is merged into itself")
            if alias in merge and merge[alias] != canonical:
                raise fail(name, f"{alias_name!r} is merged into two topics")
            merge[alias] = canonical
    for canonical in merge.values():
        if canonical in merge:
            label, key = canonical
            raise fail(
                f"{label}:{key}",
                f"'{label}:{key}' is both a topic and an alias: merge its aliases into"
                f" '{':'.join(merge[canonical])}' directly",
            )
    return merge


def _blocks(section: Any, fail: Any) -> set[Entity]:
    if not isinstance(section, dict):
        raise fail("block", "[block] must be a table with entities = [...]")
    for name in section:
        if name != "entities":
            raise fail(name, f"unknown key {name!r} in [block]; known: entities")
    entities = section.get("entities", [])
    if not isinstance(entities, list):
        raise fail("entities", 'entities must be a list of "LABEL:key" strings')
    return {_entity(item, fail) for item in entities}


def _entity(value: Any, fail: Any) -> Entity:
    """("LABEL", key) of a "LABEL:key" string, the key normalised as spaCy's text is."""
    if not isinstance(value, str):
        raise fail(str(value), f'{value!r} is not a "LABEL:key" string')
    label, colon, text = value.partition(":")
    if not colon:
        raise fail(value, f'{value!r} must be "LABEL:key", e.g. "PERSON:donald trump"')
    label = label.strip().upper()
    if label not in ALL_LABELS:
        known = ", ".join(sorted(ALL_LABELS))
        raise fail(value, f"{value!r} has unknown label {label!r}; known: {known}")
    key = normalise(text)
    if not key:
        raise fail(value, f"{value!r} has an empty key")
    return label, key


def _line_of(lines: list[str], needle: str) -> int:
    """The line (from 1) of `needle`: where it is a key if it is one, else the first that
    holds it, quoted if it can be; 0 when none does."""
    for candidate in (f'"{needle}"', f"'{needle}'", needle):
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith(candidate):
                return number
    for candidate in (f'"{needle}"', f"'{needle}'", needle):
        for number, line in enumerate(lines, start=1):
            if candidate in line.split("#", 1)[0]:
                return number
    return 0
