"""What a batch of newly stored posts adds to the counts: computed once, applied by each store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from entityflow.models import ProcessedPost

DailyKey = tuple[str, str, str, str]  # publication, label, key, date
TotalKey = tuple[str, str, str]  # publication, label, key
FormKey = tuple[str, str, str]  # label, key, display text


@dataclass(slots=True)
class Increments:
    """Sums to add: [posts, mentions] per day and in total, mentions per surface form,
    [posts, first date, last date] per publication, and posts per publication and day."""

    daily: dict[DailyKey, list[int]] = field(default_factory=dict)
    totals: dict[TotalKey, list[int]] = field(default_factory=dict)
    forms: dict[FormKey, int] = field(default_factory=dict)
    publications: dict[str, list[int | str]] = field(default_factory=dict)
    # Posts per (publication, date): the baseline that shares over time are taken of.
    days: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, processed: ProcessedPost) -> None:
        post = processed.post
        summary = self.publications.get(post.publication)
        if summary is None:
            self.publications[post.publication] = [1, post.date, post.date]
        else:
            summary[0] = int(summary[0]) + 1
            summary[1] = min(str(summary[1]), post.date)
            summary[2] = max(str(summary[2]), post.date)
        day_key = (post.publication, post.date)
        self.days[day_key] = self.days.get(day_key, 0) + 1
        for entity in processed.entities:
            day = self.daily.setdefault(
                (post.publication, entity.label, entity.key, post.date), [0, 0]
            )
            day[0] += 1
            day[1] += entity.count
            total = self.totals.setdefault((post.publication, entity.label, entity.key), [0, 0])
            total[0] += 1
            total[1] += entity.count
            form = (entity.label, entity.key, entity.text)
            self.forms[form] = self.forms.get(form, 0) + entity.count


def increments(posts: Iterable[ProcessedPost]) -> Increments:
    result = Increments()
    for processed in posts:
        result.add(processed)
    return result


def pick_display_text(forms: dict[str, int]) -> str:
    """The most mentioned surface form; ties go to the smallest text, so order never matters."""
    return min(forms.items(), key=lambda item: (-item[1], item[0]))[0]
