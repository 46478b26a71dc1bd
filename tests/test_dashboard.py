"""The dashboard in real headless Chromium against a real server seeded with real news.

One server and one browser serve the whole module; each test opens its own browser context
and checks at the end that the page logged no console error and asked nothing of any host
but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Download, Page, async_playwright

from entityflow.dataset import Article, articles
from entityflow.models import EntityCount, PostRecord, ProcessedPost
from entityflow.server import build_app
from entityflow.topics import TopicRule, resolve
from tests.conftest import API_KEY, Service, ServiceFactory, make_settings, serve_app
from tests.test_faults import FORMULAS, seed_formulas

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

# A test run leaves the checkout clean: screenshots go to a temporary directory unless
# ENTITYFLOW_SCREENSHOTS names one (`make screenshots` points it at docs/screenshots/).
SHOTS = Path(
    os.environ.get("ENTITYFLOW_SCREENSHOTS")
    or Path(tempfile.gettempdir()) / "entityflow-screenshots"
)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PER_PUBLICATION = 14


def spread_articles() -> list[Article]:
    """14 articles per publication spread evenly over Feb–Mar 2017, so timelines have shape."""
    by_publication: dict[str, list[Article]] = {}
    for article in articles():
        if "2017-02-06" <= article.date <= "2017-03-30":
            by_publication.setdefault(article.publication, []).append(article)
    chosen: list[Article] = []
    for name in sorted(by_publication):
        items = sorted(by_publication[name], key=lambda a: (a.date, a.id))
        step = (len(items) - 1) / (PER_PUBLICATION - 1)
        chosen += [items[round(i * step)] for i in range(PER_PUBLICATION)]
    return chosen


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """A real service on 127.0.0.1 holding 126 real articles from nine publications."""
    app = build_app(make_settings(tmp_path_factory.mktemp("dashboard")))
    async with serve_app(app) as url, aiohttp.ClientSession() as http:
        svc = Service(url, app, http)
        posts = [article.as_post() for article in spread_articles()]
        async with await svc.post("/v1/posts/batch", posts) as response:
            assert response.status == 202, await response.text()
        await svc.wait_processed(timeout=240)
        yield svc


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@dataclass
class Tab:
    """A page plus what it did: console errors and every URL it asked for."""

    page: Page
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self, *, console: bool = True) -> None:
        foreign = [url for url in self.requests if not _local(url)]
        assert not foreign, f"requests left 127.0.0.1: {foreign}"
        assert self.requests, "the page made no requests at all"
        if console:
            assert not self.errors, f"console errors: {self.errors}"


def _local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("blob", "data") or parts.hostname == "127.0.0.1"


OpenTab = Callable[..., Awaitable[Tab]]


@pytest_asyncio.fixture(loop_scope="module")
async def open_tab(browser: Browser) -> AsyncIterator[OpenTab]:
    """`await open_tab(url)`: a fresh context (own sessionStorage) at desktop size."""
    contexts = []

    async def start(url: str) -> Tab:
        context = await browser.new_context(
            viewport=DESKTOP,  # type: ignore[arg-type]
            locale="en-US",
            # West of UTC, so a date shown in local time would be the day before.
            timezone_id="America/Los_Angeles",
            accept_downloads=True,
            reduced_motion="reduce",
        )
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(30_000)
        tab = Tab(page)
        context.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
        context.on("weberror", lambda error: tab.errors.append(str(error.error)))
        context.on("request", lambda request: tab.requests.append(request.url))
        await page.goto(url)
        await settled(page)
        return tab

    yield start
    for context in contexts:
        await context.close()


async def settled(page: Page) -> None:
    """Until the view has rendered and nothing is loading."""
    await page.wait_for_function(
        "() => !document.querySelector('[aria-busy]')"
        " && document.querySelector('#view > .view, #view > .notice')"
    )


async def changed(page: Page, action: Awaitable[Any], **query: list[str]) -> None:
    """Run a UI action, then wait for the URL to show `query` and the results to settle."""
    await action

    def wanted(url: str) -> bool:
        got = parse_qs(urlsplit(url).query)
        return all(got.get(name, []) == values for name, values in query.items())

    await page.wait_for_url(wanted)
    await settled(page)


async def bars(page: Page, selector: str = ".results .bars > li") -> list[dict[str, Any]]:
    return await page.eval_on_selector_all(  # type: ignore[no-any-return]
        selector,
        """items => items.map(li => ({
            text: li.querySelector('.name').textContent,
            label: li.dataset.label,
            key: li.dataset.key,
            posts: Number(li.querySelector('data.posts').value),
            mentions: Number(li.querySelector('data.mentions').value),
            shown: li.querySelector('.value').textContent,
        }))""",
    )


async def download(page: Page, button: str) -> bytes:
    """The bytes of the file a button downloads, with its suggested name checked."""
    async with page.expect_download() as info:
        await page.get_by_role("button", name=button).click()
    done = await info.value
    assert done.suggested_filename.startswith("entityflow-")
    assert done.suggested_filename.endswith(".csv")
    return await _read(done)


async def _read(done: Download) -> bytes:
    path = await done.path()
    return await asyncio.to_thread(Path(path).read_bytes)


def rows_of(data: bytes) -> list[list[str]]:
    """Rows as Python's csv module reads them; every file starts with a UTF-8 byte-order mark."""
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


async def api_bytes(svc: Service, path: str, params: Any) -> bytes:
    async with await svc.get(path, params=params) as response:
        assert response.status == 200
        return await response.read()


def api_entities(entities: list[dict[str, Any]]) -> list[tuple[str, str, str, int, int]]:
    return [(e["text"], e["label"], e["key"], e["posts"], e["mentions"]) for e in entities]


async def screenshots(page: Page, name: str, phone_too: bool = True) -> None:
    """The view at laptop width, and loaded afresh at phone width, into SHOTS."""
    # Files are written off the event loop: the `service` fixture fails blocking calls.
    await asyncio.to_thread(SHOTS.mkdir, parents=True, exist_ok=True)
    await page.mouse.move(0, 0)
    await page.evaluate("window.scrollTo(0, 0)")
    await asyncio.to_thread((SHOTS / f"{name}-desktop.png").write_bytes, await _shot(page))
    if not phone_too:
        return
    phone = await page.context.new_page()
    await phone.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await phone.goto(page.url)
    await settled(phone)
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name} scrolls sideways on a phone ({width}px wide)"
    await asyncio.to_thread((SHOTS / f"{name}-phone.png").write_bytes, await _shot(phone))
    await phone.close()


async def _shot(page: Page, most: int = 1200) -> bytes:
    """The top of the whole page, at most `most` pixels of it (PNGs stay small)."""
    size = await page.evaluate("[innerWidth, document.documentElement.scrollHeight]")
    clip = {"x": 0, "y": 0, "width": size[0], "height": min(size[1], most)}
    return await page.screenshot(full_page=True, clip=clip, animations="disabled")  # type: ignore[arg-type]


# The views


async def test_overview_shows_the_api_numbers(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/?as=entities")
    page = tab.page
    publications = await seeded.get_json("/v1/publications")
    assert len(publications) == 9
    shown = await page.eval_on_selector_all(
        "table.publications tbody tr",
        """rows => rows.map(r => [r.dataset.name, Number(r.querySelector('data.posts').value),
            ...[...r.querySelectorAll('time')].map(t => t.dateTime)])""",
    )
    assert shown == [[p["name"], p["posts"], p["first_date"], p["last_date"]] for p in publications]
    first = await page.locator("table.publications tbody time").first.inner_text()
    assert first == date.fromisoformat(publications[0]["first_date"]).strftime("%b %-d, %Y")
    total = sum(p["posts"] for p in publications)
    assert f"{total} posts from 9 publications" in await page.locator(".view-head").inner_text()

    top = (await seeded.get_json("/v1/entities", params={"limit": "20"}))["entities"]
    drawn = await bars(page, ".view-overview .bars > li")
    assert [(d["text"], d["label"], d["key"], d["posts"], d["mentions"]) for d in drawn] == (
        api_entities(top)
    )
    # Numbers read as people write them: the formatted count, then the word.
    assert drawn[0]["shown"].startswith(f"{top[0]['posts']:,} posts · {top[0]['mentions']:,}")

    pubs_csv = rows_of(await download(page, "Download publications CSV"))
    assert pubs_csv[0] == ["name", "posts", "first_date", "last_date"]
    assert pubs_csv[1:] == [[str(v) for v in row] for row in shown]
    entities_csv = await download(page, "Download entities CSV")
    params = {"limit": "20", "sort": "posts", "format": "csv"}
    assert entities_csv == await api_bytes(seeded, "/v1/entities", params)
    assert rows_of(entities_csv)[1][:4] == ["all", "", "", "all"]
    await screenshots(page, "overview")
    tab.assert_clean()


async def test_publication_view_filters_csv_and_bookmark(
    seeded: Service, open_tab: OpenTab
) -> None:
    tab = await open_tab(seeded.url + "/?view=publication&publication=CNN&as=entities")
    page = tab.page
    assert await page.locator("h1").inner_text() == "CNN"

    async def matches_api(**query: str | list[str]) -> list[dict[str, Any]]:
        params = [("publication", "CNN")] + [
            (name, value)
            for name, values in query.items()
            for value in (values if isinstance(values, list) else [values])
        ]
        want = (await seeded.get_json("/v1/entities", params=params))["entities"]
        drawn = await bars(page)
        assert [(d["text"], d["label"], d["key"], d["posts"], d["mentions"]) for d in drawn] == (
            api_entities(want)
        )
        return drawn

    everything = await matches_api()
    assert len(everything) == 20
    assert {d["label"] for d in everything} != {"PERSON"}

    await changed(page, page.get_by_label("People", exact=True).check(), label=["PERSON"])
    people = await matches_api(label="PERSON")
    assert people and {d["label"] for d in people} == {"PERSON"}

    await changed(
        page, page.get_by_label("Organisations", exact=True).check(), label=["PERSON", "ORG"]
    )
    await changed(page, page.get_by_label("Mentions", exact=True).check(), sort=["mentions"])
    await page.get_by_label("How many", exact=True).fill("7")
    await changed(page, page.get_by_label("How many", exact=True).press("Enter"), limit=["7"])
    await page.get_by_label("From", exact=True).fill("2017-03-01")
    await changed(page, page.get_by_label("From", exact=True).press("Enter"), since=["2017-03-01"])
    chosen = await matches_api(
        label=["PERSON", "ORG"], sort="mentions", limit="7", since="2017-03-01"
    )
    assert len(chosen) == 7
    assert [d["mentions"] for d in chosen] == sorted((d["mentions"] for d in chosen), reverse=True)
    assert chosen != people[:7]

    # The CSV is what is on screen, byte for byte what the API's own CSV says.
    data = await download(page, "Download CSV")
    query = "publication=CNN&label=PERSON&label=ORG&sort=mentions&limit=7&since=2017-03-01"
    async with await seeded.get(f"/v1/entities?{query}&format=csv") as response:
        assert data == await response.read()
        assert "cnn_person-and-org_from-2017-03-01" in response.headers["Content-Disposition"]
    table = rows_of(data)
    assert table[0][:4] == ["filter_publication", "filter_since", "filter_until", "filter_labels"]
    assert {tuple(row[:4]) for row in table[1:]} == {("CNN", "2017-03-01", "", "PERSON; ORG")}
    assert [row[6] for row in table[1:]] == [d["key"] for d in chosen]
    await screenshots(page, "publication")

    # The bookmark restores the view: same controls, same rows.
    bookmark = page.url
    again = await open_tab(bookmark)
    assert await again.page.get_by_label("People", exact=True).is_checked()
    assert await again.page.get_by_label("Organisations", exact=True).is_checked()
    assert not await again.page.get_by_label("Events", exact=True).is_checked()
    assert await again.page.get_by_label("Mentions", exact=True).is_checked()
    assert await again.page.get_by_label("How many", exact=True).input_value() == "7"
    assert await again.page.get_by_label("From", exact=True).input_value() == "2017-03-01"
    assert await bars(again.page) == chosen

    # A filter that matches nothing says so.
    await page.get_by_label("From", exact=True).fill("2016-01-01")
    await page.get_by_label("To", exact=True).fill("2016-01-31")
    await changed(page, page.get_by_label("To", exact=True).press("Enter"), until=["2016-01-31"])
    assert await page.locator(".results .bars").count() == 0
    await page.get_by_text("Nothing matches these filters").wait_for()

    # Back returns to the previous state of the view.
    await page.go_back()
    await page.wait_for_url(lambda url: "until" not in url)
    await settled(page)
    assert await page.get_by_label("From", exact=True).input_value() == "2017-03-01"
    assert await page.locator(".results .bars li").count() == 7
    tab.assert_clean()
    again.assert_clean()


def overlap_warned(names: list[str], since: str | None, until: str | None) -> bool:
    """The overlap rule, from the seeded articles themselves: the dates all of them published
    on cover less than half of the shortest publication's span in the range."""
    spans = []
    for name in names:
        days = [
            date.fromisoformat(a.date)
            for a in spread_articles()
            if a.publication == name
            and (not since or a.date >= since)
            and (not until or a.date <= until)
        ]
        if days:
            spans.append((min(days), max(days)))
    if len(spans) < 2:
        return False
    start, end = max(s for s, _ in spans), min(e for _, e in spans)
    common = max(0, (end - start).days + 1)
    return common < min((e - s).days + 1 for s, e in spans) / 2


async def overflowing(page: Page) -> list[str]:
    """Elements whose box leaves the panel that holds them (a bounding-box check)."""
    return await page.evaluate(  # type: ignore[no-any-return]
        """() => {
            const bad = [];
            for (const panel of document.querySelectorAll('.results .panel')) {
                const outer = panel.getBoundingClientRect();
                for (const el of panel.querySelectorAll('*:not(.visually-hidden)')) {
                    const box = el.getBoundingClientRect();
                    if (box.width && (box.right > outer.right + 0.5 || box.left < outer.left - 0.5))
                        bad.push(`${el.tagName}.${el.className}: ${el.textContent.slice(0, 40)}`);
                }
            }
            if (document.documentElement.scrollWidth > innerWidth) bad.push('the page');
            return bad;
        }"""
    )


async def test_compare_shared_and_distinctive(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/?view=compare&publication=BBC&publication=TASS&as=entities")
    page = tab.page
    head = await page.locator(".view-head").inner_text()
    assert "share minus the mean of the others' shares" in head
    assert await page.title() == "BBC vs TASS · Compare · entityflow"

    async def matches_api(names: list[str], since: str = "", until: str = "") -> None:
        query = [("publication", n) for n in names] + [("limit", "10")]
        query += [(k, v) for k, v in (("since", since), ("until", until)) if v]
        shared = await seeded.get_json("/v1/compare", params=[*query, ("sort", "shared")])
        distinctive = await seeded.get_json("/v1/compare", params=[*query, ("sort", "distinctive")])
        on_screen = await page.eval_on_selector_all(
            "table.shared tbody tr",
            "rows => rows.map(r => [r.dataset.key,"
            " [...r.querySelectorAll('data.share')].map(d => d.value)])",
        )
        assert on_screen == [
            [e["key"], [f"{100 * e['share'][n]:.1f}" for n in names]] for e in shared["entities"]
        ]
        if shared["entities"]:
            headers = await page.locator("table.shared thead th").all_inner_texts()
            assert headers == ["Entity", *names]
        for name in names:
            section = page.locator(f'section.distinctive[data-publication="{name}"]')
            shown = await section.locator("li").evaluate_all(
                "items => items.map(li => [li.dataset.key,"
                " li.querySelector('data.share').value, li.querySelector('data.lift').value])"
            )
            assert shown == [
                [e["key"], f"{100 * e['share'][name]:.1f}", f"{100 * e['lift']:.1f}"]
                for e in distinctive["entities"]
                if e["distinctive_to"] == name
            ]
        for sort in ("distinctive", "shared"):
            data = await download(page, f"Download {sort} CSV")
            params = [*query, ("sort", sort), ("format", "csv")]
            assert data == await api_bytes(seeded, "/v1/compare", params)
            assert rows_of(data)[0][0] == "filter_publication"
        warned = await page.locator(".overlap").count() == 1
        assert warned == overlap_warned(names, since or None, until or None)

    await matches_api(["BBC", "TASS"])
    await changed(
        page,
        page.get_by_role("checkbox", name="CNN").check(),
        publication=["BBC", "CNN", "TASS"],
    )
    await matches_api(["BBC", "CNN", "TASS"])
    assert await page.locator("section.distinctive").count() == 3

    # Four outlets at 1280 px: nothing leaves its column.
    await changed(
        page,
        page.get_by_role("checkbox", name="Deutsche Welle").check(),
        publication=["BBC", "CNN", "Deutsche Welle", "TASS"],
    )
    await matches_api(["BBC", "CNN", "Deutsche Welle", "TASS"])
    assert await overflowing(page) == []
    await screenshots(page, "compare")

    again = await open_tab(page.url)
    assert await again.page.get_by_role("checkbox", name="CNN").is_checked()
    assert await again.page.locator("section.distinctive").count() == 4

    # Date ranges: the overlap warning appears exactly when the rule says it should.
    candidates = [
        (pair, f"2017-{m:02d}-{d:02d}", f"2017-{m:02d}-{d + 6:02d}")
        for m in (2, 3)
        for d in (6, 13, 20)
        for pair in (["BBC", "TASS"], ["CNN", "RTÉ"], ["Al Jazeera", "China Daily"])
    ]
    warn = next(c for c in candidates if overlap_warned(*c))
    calm = next(c for c in candidates if not overlap_warned(*c))
    for pair, since, until in (warn, calm):
        url = f"{seeded.url}/?view=compare&publication={pair[0]}&publication={pair[1]}"
        other = await open_tab(f"{url}&since={since}&until={until}&as=entities")
        page = other.page
        await matches_api(pair, since, until)
        if (pair, since, until) == warn:
            await screenshots(page, "compare-overlap", phone_too=False)
        other.assert_clean()

    # One publication is not a comparison: the page says what it needs.
    page = tab.page
    for name in ("CNN", "Deutsche Welle"):
        await page.get_by_role("checkbox", name=name).uncheck()
    await changed(page, page.get_by_role("checkbox", name="TASS").uncheck(), publication=["BBC"])
    await page.get_by_text("Pick two to 10 publications").wait_for()
    tab.assert_clean()
    again.assert_clean()


async def test_entity_timeline_as_a_share(seeded: Service, open_tab: OpenTab) -> None:
    entity = (await seeded.get_json("/v1/entities", params={"label": "PERSON", "limit": "1"}))[
        "entities"
    ][0]
    url = f"{seeded.url}/?view=entity&label=PERSON&key={entity['key']}&as=entities"
    tab = await open_tab(url)
    page = tab.page
    assert await page.locator("h1").inner_text() == entity["text"]
    assert await page.title() == f"{entity['text']} · Entity · entityflow"
    assert "key" not in await page.locator(".view-head").inner_text()

    publications = await seeded.get_json("/v1/publications")
    # With no dates set, the page asks for the publications' whole span.
    first = min(p["first_date"] for p in publications)
    last = max(p["last_date"] for p in publications)

    async def matches_api(interval: str, since: str = "", until: str = "") -> dict[str, Any]:
        query = [("label", "PERSON"), ("key", entity["key"]), ("interval", interval)]
        query += [("since", since or first), ("until", until or last)]
        body = await seeded.get_json("/v1/entities/timeline", params=query)
        totals = await page.eval_on_selector_all(
            ".multiples li",
            "items => items.map(li => [li.dataset.publication,"
            " Number(li.querySelector('data.total').value),"
            " li.querySelector('data.share').value])",
        )
        want = []
        for s in body["series"]:
            posts = sum(p["posts"] for p in s["points"])
            published = sum(p["published"] for p in s["points"])
            want.append([s["publication"], posts, f"{100 * posts / published:.1f}"])
        assert totals == want
        # Every publication with posts in the range is there, mentioning it or not.
        assert {s["publication"] for s in body["series"]} == {
            a.publication for a in spread_articles()
            if (not since or a.date >= since) and (not until or a.date <= until)
        }  # fmt: skip
        assert await page.locator(".multiples li").first.locator("rect").count() == len(
            body["series"][0]["points"]
        )
        data = await download(page, "Download CSV")
        assert data == await api_bytes(seeded, "/v1/entities/timeline", [*query, ("format", "csv")])
        table = page.locator("details.panel").filter(has_text="The numbers as a table")
        if not await table.get_attribute("open"):
            await page.get_by_text("The numbers as a table").click()
        shown = await page.locator("table.timeline tbody tr").evaluate_all(
            "rows => rows.map(r => [r.querySelector('time').dateTime,"
            " ...[...r.querySelectorAll('data.posts')].map(d => Number(d.value))])"
        )
        assert shown == [
            [point["date"], *(s["points"][i]["posts"] for s in body["series"])]
            for i, point in enumerate(body["series"][0]["points"])
        ]
        return body

    weekly = await matches_api("week")
    assert entity["posts"] == sum(p["posts"] for s in weekly["series"] for p in s["points"])
    await changed(page, page.get_by_label("Month", exact=True).check(), interval=["month"])
    await matches_api("month")
    # The axis covers the whole range typed, not only the days it was mentioned.
    await page.get_by_label("From", exact=True).fill("2017-02-01")
    await page.get_by_label("To", exact=True).fill("2017-04-30")
    await changed(page, page.get_by_label("To", exact=True).press("Enter"), until=["2017-04-30"])
    ranged = await matches_api("month", "2017-02-01", "2017-04-30")
    assert [p["date"] for p in ranged["series"][0]["points"]] == [
        "2017-02-01", "2017-03-01", "2017-04-01",
    ]  # fmt: skip
    await changed(page, page.get_by_label("Share of posts", exact=True).check(), sort=["share"])
    heights = (
        await page.locator(".multiples li")
        .first.locator("rect")
        .evaluate_all("rects => rects.map(r => Number(r.getAttribute('height')))")
    )
    shares = [p["share"] for p in ranged["series"][0]["points"]]
    peak = max(p["share"] for s in ranged["series"] for p in s["points"])
    assert heights == pytest.approx([100 * s / peak for s in shares])
    await screenshots(page, "entity")

    # Typing a name that nothing mentions says so.
    await page.get_by_label("Name", exact=True).fill("Nobody Atall")
    await changed(page, page.get_by_label("Name", exact=True).press("Enter"), key=["nobody atall"])
    await page.get_by_text("No mentions").first.wait_for()
    tab.assert_clean()


async def test_phone_entity_view_shows_a_chart_first(seeded: Service, browser: Browser) -> None:
    context = await browser.new_context(viewport=PHONE, locale="en-US")  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(f"{seeded.url}/?view=entity")
    await settled(page)
    chart = await page.locator(".multiples li svg").first.bounding_box()
    assert chart is not None and chart["y"] + chart["height"] <= PHONE["height"]
    await context.close()


async def test_keyboard_only_walk(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/?as=entities")
    page = tab.page
    keys = page.keyboard

    async def tab_to(describe: str) -> None:
        """Press Tab until the focused element matches a JS predicate on `el`."""
        for _ in range(120):
            await keys.press("Tab")
            if await page.evaluate(f"(el => {describe})(document.activeElement)"):
                return
        raise AssertionError(f"Tab never reached {describe}")

    await tab_to("el.tagName === 'A' && el.textContent === 'CNN'")
    await changed(page, keys.press("Enter"), view=["publication"], publication=["CNN"])
    assert await page.evaluate("document.activeElement.tagName") == "H1"

    await tab_to("el.type === 'checkbox' && el.value === 'PERSON'")
    await changed(page, keys.press("Space"), label=["PERSON"])
    first = (await bars(page))[0]
    assert first["label"] == "PERSON"

    await tab_to("el.matches('.results .bars li:first-child a')")
    await changed(page, keys.press("Enter"), view=["entity"], key=[first["key"]])
    assert await page.locator("h1").inner_text() == first["text"]

    await tab_to("el.type === 'radio' && el.name === 'interval'")
    await changed(page, keys.press("ArrowRight"), interval=["month"])

    await tab_to("el.tagName === 'BUTTON' && el.textContent === 'Download CSV'")
    async with page.expect_download() as info:
        await keys.press("Enter")
    assert (await _read(await info.value)).startswith(b"\xef\xbb\xbffilter_publication,")

    tab.assert_clean()


# Empty, down and protected


async def test_empty_service_then_service_down(service: ServiceFactory, open_tab: OpenTab) -> None:
    async with service() as svc:
        tab = await open_tab(svc.url + "/")
        page = tab.page
        await page.get_by_text("No posts yet").wait_for()
        await page.get_by_role("link", name="Compare", exact=True).click()
        await settled(page)
        await page.get_by_text("No posts yet").wait_for()
        await screenshots(page, "empty")
    # The server is gone; the page, already loaded, says so plainly.
    await page.get_by_role("link", name="Entity", exact=True).click()
    await settled(page)
    alert = page.get_by_role("alert")
    assert "Cannot reach the service" in await alert.inner_text()
    assert "not answering" in await alert.inner_text()
    tab.assert_clean(console=False)  # the refused connection is logged by Chromium itself


async def test_protected_reads_ask_for_the_key_once_per_tab(
    service: ServiceFactory, open_tab: OpenTab
) -> None:
    async with service(protect_reads=True) as svc:
        async with await svc.get("/v1/publications") as response:
            assert response.status == 401
        tab = await open_tab(svc.url + "/?view=publication")
        page = tab.page
        await page.get_by_label("API key", exact=True).fill("not-the-key")
        await page.get_by_label("API key", exact=True).press("Enter")
        await page.get_by_text("That API key was not accepted").wait_for()
        # Desktop only: at phone width its card's antialiasing differs from run to run.
        await screenshots(page, "api-key", phone_too=False)
        await page.get_by_label("API key", exact=True).fill(API_KEY)
        await page.get_by_role("button", name="Continue").click()
        await page.get_by_text("No posts yet").wait_for()
        assert await page.evaluate("sessionStorage.getItem('entityflow.apiKey')") == API_KEY
        assert await page.evaluate("localStorage.length") == 0

        # Asked once: other views in this tab read with the kept key.
        await page.get_by_role("link", name="Overview", exact=True).click()
        await settled(page)
        await page.get_by_text("No posts yet").wait_for()
        assert await page.get_by_label("API key", exact=True).count() == 0

        # A new tab (a new session) asks again.
        other = await tab.page.context.new_page()
        await other.goto(svc.url + "/")
        await other.get_by_label("API key", exact=True).wait_for()
        tab.assert_clean(console=False)  # Chromium logs each 401 answer as an error


# Stories, search, typed dates, titles


async def show_every_story(page: Page) -> None:
    """Press "Show more" until the story list holds every page."""
    more = page.get_by_role("button", name="Show more")
    while await more.is_visible():
        count = await page.locator(".story-list li").count()
        await more.click()
        await page.wait_for_function(
            f"() => document.querySelectorAll('.story-list li').length > {count}"
        )


async def test_every_count_opens_its_stories(seeded: Service, open_tab: OpenTab) -> None:
    # A story list is one entity's: the counts of raw entities link to theirs.
    tab = await open_tab(seeded.url + "/?as=entities")
    page = tab.page
    first = (await bars(page, ".view-overview .bars li"))[0]
    await changed(
        page,
        page.locator(".view-overview .bars li").first.locator("a.stories").click(),
        view=["posts"],
        key=[first["key"]],
    )
    assert await page.title() == f"{first['text']} · Stories · entityflow"
    params = {"label": first["label"], "key": first["key"], "limit": "1000"}
    want = (await seeded.get_json("/v1/posts", params=params))["posts"]
    assert len(want) == first["posts"] > 20
    await show_every_story(page)
    shown = await page.locator(".story-list li").evaluate_all(
        "items => items.map(li => [li.dataset.id, li.querySelector('a.story').href,"
        " li.querySelector('a.story').textContent])"
    )
    by_id = {a.id: a for a in spread_articles()}
    assert shown == [
        [p["id"], by_id[p["id"]].url, by_id[p["id"]].title or "(untitled)"] for p in want
    ]
    dates = [p["date"] for p in want]
    assert dates == sorted(dates, reverse=True)
    await screenshots(page, "stories")

    # From Compare: the count under a share lists that publication's posts.
    compare = await open_tab(
        seeded.url + "/?view=compare&publication=BBC&publication=TASS&as=entities"
    )
    cell = compare.page.locator("table.shared tbody tr").first
    key = await cell.get_attribute("data-key")
    link = cell.locator("a.stories").first
    count = int((await link.inner_text()).split()[0])
    await changed(compare.page, link.click(), view=["posts"], publication=["BBC"], key=[key or ""])
    assert await compare.page.locator(".story-list li").count() == count
    tab.assert_clean()
    compare.assert_clean()


async def test_a_topic_count_opens_its_stories(seeded: Service, open_tab: OpenTab) -> None:
    """Topics are the default: a topic's count lists the posts whose topics include it,
    through every form it gathers, each linking to its article."""
    tab = await open_tab(seeded.url + "/")
    page = tab.page
    drawn = await bars(page, ".view-overview .bars > li")
    topics = (await seeded.get_json("/v1/topics", params={"limit": str(len(drawn))}))["topics"]
    index, topic = next((i, t) for i, t in enumerate(topics) if len(t["aliases"]) >= 2)
    assert (drawn[index]["label"], drawn[index]["key"]) == (topic["label"], topic["key"])
    await changed(
        page,
        page.locator(".view-overview .bars > li").nth(index).locator("a.stories").click(),
        view=["posts"],
        key=[topic["key"]],
        label=[topic["label"]],
    )
    assert "as=entities" not in page.url
    params = {"label": topic["label"], "key": topic["key"], "limit": "1000"}
    want = (await seeded.get_json("/v1/posts", params={**params, "kind": "topics"}))["posts"]
    assert len(want) == topic["posts"]
    # More posts than the topic's key as an entity: its other forms count too.
    as_entity = (await seeded.get_json("/v1/posts", params=params))["posts"]
    assert {p["id"] for p in as_entity} < {p["id"] for p in want}
    await show_every_story(page)
    shown = await page.locator(".story-list li").evaluate_all(
        "items => items.map(li => [li.dataset.id, li.querySelector('a.story').href])"
    )
    by_id = {a.id: a for a in spread_articles()}
    assert shown == [[p["id"], by_id[p["id"]].url] for p in want]
    await screenshots(page, "stories-topic", phone_too=False)
    # From the topic's own view: a publication's count lists that publication's posts.
    await changed(page, page.locator(".view-head a[data-nav]").click(), view=["entity"])
    first = page.locator("ul.multiples li a.stories").first
    publication = await page.locator("ul.multiples li").first.get_attribute("data-publication")
    total = int(await page.locator("ul.multiples li data.total").first.get_attribute("value") or 0)
    await changed(page, first.click(), view=["posts"], publication=[publication or ""])
    assert await page.locator(".story-list li").count() == min(total, 20)
    tab.assert_clean()


async def test_search_finds_entities_from_any_view(
    service: ServiceFactory, open_tab: OpenTab
) -> None:
    def post(number: int, *entities: tuple[str, str, str]) -> ProcessedPost:
        record = PostRecord(f"s{number}", "Die Zeitung", "-", f"2017-05-0{number}")
        return ProcessedPost(record, tuple(EntityCount(*e, 1) for e in entities))

    merkel = ("PERSON", "angela merkel", "Angela Merkel")
    async with service() as svc:
        await svc.store.write(
            [
                post(1, merkel, ("PERSON", "emmanuel macron", "Emmanuel Macron")),
                post(2, merkel, ("FAC", "karl-marx-strasse", "Karl-Marx-Straße")),
                post(3, merkel, ("GPE", "germany", "Germany")),
            ]
        )
        tab = await open_tab(svc.url + "/?view=compare&as=entities")
        page = tab.page
        find = page.get_by_label("Find an entity (any kind)")
        for typed, label, key, text in (
            ("angela merkel", "PERSON", "angela merkel", "Angela Merkel"),
            ("ANGELA MERKEL", "PERSON", "angela merkel", "Angela Merkel"),
            ("Merkel", "PERSON", "angela merkel", "Angela Merkel"),
            ("Straße", "FAC", "karl-marx-strasse", "Karl-Marx-Straße"),
            ("Macr", "PERSON", "emmanuel macron", "Emmanuel Macron"),
        ):
            await find.fill(typed)
            await changed(page, find.press("Enter"), view=["entity"], label=[label], key=[key])
            assert await page.locator("h1").inner_text() == text
        # In the Entity view, with Place selected, a person is still found.
        await page.get_by_label("Kind", exact=True).select_option("GPE")
        await page.get_by_label("Name", exact=True).fill("angela merkel")
        await changed(
            page,
            page.get_by_label("Name", exact=True).press("Enter"),
            label=["PERSON"],
            key=["angela merkel"],
        )
        # Suggestions while typing.
        await page.get_by_label("Name", exact=True).fill("")
        await page.get_by_label("Name", exact=True).press_sequentially("Mac", delay=30)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#entity-names option')]"
            ".some(o => o.value === 'Emmanuel Macron')"
        )
        # A hand-edited link with the name instead of the key.
        other = await open_tab(
            svc.url + "/?view=entity&label=PERSON&key=Angela%20Merkel&as=entities"
        )
        assert await other.page.locator("h1").inner_text() == "Angela Merkel"
        tab.assert_clean()
        other.assert_clean()


async def test_typed_names_take_the_servers_key(service: ServiceFactory, open_tab: OpenTab) -> None:
    """The page makes no keys: "Straße" is "strasse" by the server's rule (casefold), where
    JavaScript's toLowerCase() would say "straße"."""

    def post(number: int, *entities: tuple[str, str, str]) -> ProcessedPost:
        record = PostRecord(f"k{number}", "Die Zeitung", "-", f"2017-05-0{number}")
        return ProcessedPost(record, tuple(EntityCount(*e, 1) for e in entities))

    street = ("FAC", "strasse", "Straße")  # the key the server's rule makes of "Straße"
    async with service() as svc:
        await svc.store.write(
            [
                post(1, street),
                post(2, street),
                post(3, ("ORG", "strasse", "STRASSE")),
            ]
        )
        tab = await open_tab(svc.url + "/?view=entity&label=PERSON&key=nobody&as=entities")
        page = tab.page
        name = page.get_by_label("Name", exact=True)
        # Two kinds share the key: the kind selected picks the exact match, not the partial
        # match with the most posts (which is all a key made in the page could find).
        await page.get_by_label("Kind", exact=True).select_option("ORG")
        await name.fill("Straße")
        await changed(page, name.press("Enter"), label=["ORG"], key=["strasse"])
        assert await page.locator("h1").inner_text() == "STRASSE"
        # A name nothing mentions: the address carries the server's key for it.
        await name.fill("Weiße Straße")
        await changed(page, name.press("Enter"), key=["weisse strasse"])
        await page.get_by_text("No mentions").first.wait_for()
        # A hand-made link with a name: the service's key replaces it in the address.
        other = await open_tab(svc.url + "/?view=entity&label=FAC&key=Stra%C3%9Fe&as=entities")
        await other.page.wait_for_url(
            lambda url: parse_qs(urlsplit(url).query)["key"] == ["strasse"]
        )
        assert await other.page.locator("h1").inner_text() == "Straße"
        assert await other.page.locator("data.total").evaluate_all(
            "items => items.map(d => Number(d.value))"
        ) == [2]


async def test_search_finds_topics_in_topics_mode(
    service: ServiceFactory, open_tab: OpenTab
) -> None:
    """On topics (the default) the header search and the Entity view find topics, through
    any of their forms; on raw entities, entities."""

    def post(number: int, *entities: tuple[str, str, str, int]) -> ProcessedPost:
        record = PostRecord(f"t{number}", "Die Zeitung", "-", f"2017-05-0{number}")
        found = tuple(EntityCount(*e) for e in entities)
        rule = TopicRule()
        return ProcessedPost(record, found, resolve(found, "Die Zeitung", rule), rule.version)

    async with service() as svc:
        await svc.store.write(
            [
                post(1, ("PERSON", "angela merkel", "Angela Merkel", 1),
                     ("PERSON", "merkel", "Merkel", 3), ("GPE", "us", "US", 2)),
                post(2, ("GPE", "u.s.", "U.S.", 1), ("PERSON", "emmanuel macron", "Macron", 1)),
            ]
        )  # fmt: skip
        tab = await open_tab(svc.url + "/?view=compare")
        page = tab.page
        find = page.get_by_label("Find an entity (any kind)")
        for typed, label, key in (
            ("U.S.", "GPE", "united states"),
            ("us", "GPE", "united states"),
            ("MERKEL", "PERSON", "angela merkel"),
            ("Macr", "PERSON", "emmanuel macron"),
        ):
            await find.fill(typed)
            await changed(page, find.press("Enter"), view=["entity"], label=[label], key=[key])
            assert "as=entities" not in page.url
            answer = await svc.get_json("/v1/search", params={"q": typed, "kind": "topics"})
            assert await page.locator("h1").inner_text() == answer["entities"][0]["text"]
        # The topic's view counts both posts: "US" and "U.S." are one country.
        total = page.locator("ul.multiples li data.total")
        await find.fill("U.S.")
        await changed(page, find.press("Enter"), key=["united states"])
        assert await total.first.get_attribute("value") == "2"
        # Suggestions while typing, by topic name.
        name = page.get_by_label("Name", exact=True)
        await name.fill("")
        await name.press_sequentially("Merk", delay=30)
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#entity-names option')]"
            ".some(o => o.value === 'Merkel')"
        )
        asked = [u for u in tab.requests if "/v1/search" in u]
        assert asked and all("kind=topics" in u for u in asked)
        # On raw entities the same search finds the string as spaCy found it.
        other = await open_tab(svc.url + "/?view=overview&as=entities")
        await other.page.get_by_label("Find an entity (any kind)").fill("U.S.")
        await changed(
            other.page,
            other.page.get_by_label("Find an entity (any kind)").press("Enter"),
            view=["entity"], label=["GPE"], key=["u.s."], **{"as": ["entities"]},
        )  # fmt: skip
        tab.assert_clean()
        other.assert_clean()


async def test_a_typed_date_is_one_request_and_one_history_entry(
    seeded: Service, open_tab: OpenTab
) -> None:
    tab = await open_tab(seeded.url + "/?view=publication&publication=CNN&as=entities")
    page = tab.page
    assert await page.title() == "CNN · Publication · entityflow"
    before = len([u for u in tab.requests if "/v1/entities" in u])
    history = await page.evaluate("history.length")
    since = page.get_by_label("From", exact=True)
    await since.focus()
    # Digit by digit, as a person types: month, day, year.
    await page.keyboard.type("02052017", delay=40)
    await page.wait_for_timeout(300)
    assert len([u for u in tab.requests if "/v1/entities" in u]) == before
    assert await page.locator(".date-problem").is_hidden()
    await changed(page, page.keyboard.press("Enter"), since=["2017-02-05"])
    assert len([u for u in tab.requests if "/v1/entities" in u]) == before + 1
    assert await page.evaluate("history.length") == history + 1

    # A start after the end is said next to the dates, and nothing is asked of the service.
    until = page.get_by_label("To", exact=True)
    await until.focus()
    await page.keyboard.type("01012017", delay=40)
    await page.keyboard.press("Enter")
    problem = page.locator(".date-problem")
    await problem.wait_for()
    assert "is after the end date" in await problem.inner_text()
    assert len([u for u in tab.requests if "/v1/entities" in u]) == before + 1
    tab.assert_clean()


async def test_titles_name_the_view_and_its_subject(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/")
    page = tab.page
    assert await page.title() == "Overview · entityflow"
    for url, title in (
        ("?view=publication&publication=BBC", "BBC · Publication · entityflow"),
        ("?view=compare&publication=BBC&publication=CNN", "BBC vs CNN · Compare · entityflow"),
        ("?view=entity&label=GPE&key=russia", "Russia · Entity · entityflow"),
        ("?view=posts&label=GPE&key=russia", "Russia · Stories · entityflow"),
    ):
        other = await open_tab(f"{seeded.url}/{url}")
        assert await other.page.title() == title
        other.assert_clean()
    tab.assert_clean()


async def test_several_entities_on_one_chart(seeded: Service, open_tab: OpenTab) -> None:
    top = (await seeded.get_json("/v1/entities", params={"limit": "2"}))["entities"]
    first, second = top
    url = f"{seeded.url}/?view=entity&label={first['label']}&key={first['key']}&interval=month"
    url += "&as=entities"
    tab = await open_tab(url)
    page = tab.page
    await page.get_by_label("Add another to the chart").fill(second["text"])
    await changed(
        page,
        page.get_by_label("Add another to the chart").press("Enter"),
        also=[f"{second['label']}:{second['key']}"],
    )
    assert [text.strip() for text in await page.locator(".legend li").all_inner_texts()] == [
        first["text"],
        f"{second['text']} ×",
    ]
    assert await page.title() == f"{first['text']}, {second['text']} · Entity · entityflow"
    publications = await seeded.get_json("/v1/publications")
    body = await seeded.get_json(
        "/v1/entities/timeline",
        params={
            "label": second["label"],
            "key": second["key"],
            "interval": "month",
            "since": min(p["first_date"] for p in publications),
            "until": max(p["last_date"] for p in publications),
        },
    )
    for series in body["series"]:
        item = page.locator(f'.multiples li[data-publication="{series["publication"]}"]')
        heights = await item.locator("rect.e1").evaluate_all(
            "rects => rects.map(r => Number(r.getAttribute('height')))"
        )
        assert len(heights) == len(series["points"])
        # Posts on one scale: the second entity's bars are its own counts.
        assert [h > 0 for h in heights] == [p["posts"] > 0 for p in series["points"]]
    await screenshots(page, "entity-two", phone_too=False)


async def test_downloads_never_begin_a_cell_with_a_formula(
    open_tab: OpenTab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = build_app(make_settings(tmp_path_factory.mktemp("formulas")))
    async with serve_app(app) as url, aiohttp.ClientSession() as http:
        svc = Service(url, app, http)
        await seed_formulas(svc)
        tab = await open_tab(url + "/?as=entities")
        publications = rows_of(await download(tab.page, "Download publications CSV"))
        entities_bytes = await download(tab.page, "Download entities CSV")
        entities = rows_of(entities_bytes)
        cells = [cell for row in publications + entities for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
        escaped = sorted("'" + text for text in FORMULAS)
        # The publications table is made in the page; the entities CSV is the API's own.
        assert sorted(row[0] for row in publications[1:]) == escaped
        column = entities[0].index("text")
        assert sorted(row[column] for row in entities[1:]) == escaped
        params = {"limit": "20", "sort": "posts", "format": "csv"}
        assert entities_bytes == await api_bytes(svc, "/v1/entities", params)
        # The page shows the true text.
        shown = await tab.page.eval_on_selector_all(
            ".view-overview .bars li .name", "items => items.map(i => i.textContent)"
        )
        assert sorted(shown) == sorted(FORMULAS)
        tab.assert_clean()


# Topics: the default, with their aliases; the switch to raw entities


def api_topics(topics: list[dict[str, Any]]) -> list[tuple[str, str, str, int, int]]:
    return [(t["name"], t["label"], t["key"], t["posts"], t["mentions"]) for t in topics]


async def test_topics_by_default_with_their_aliases(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/")
    page = tab.page
    top = (await seeded.get_json("/v1/topics", params={"limit": "20"}))["topics"]
    drawn = await bars(page, ".view-overview .bars > li")
    assert [(d["text"], d["label"], d["key"], d["posts"], d["mentions"]) for d in drawn] == (
        api_topics(top)
    )
    assert "Top 20 topics" in await page.locator("#top-title").inner_text()
    # A topic that gathers several forms shows them on hover and on expand.
    merged = next(t for t in top if len(t["aliases"]) >= 2)
    row = page.locator(f".view-overview .bars > li[data-key='{merged['key']}']")
    forms = row.locator("details.aliases")
    for alias in merged["aliases"]:
        assert f"{alias['text']} ({alias['label']}): {alias['mentions']}" in (
            await forms.get_attribute("title") or ""
        )
    assert not await forms.locator("ul").is_visible()
    await forms.locator("summary").click()
    shown = await forms.locator("li").evaluate_all(
        "items => items.map(li => [li.dataset.label, li.dataset.key])"
    )
    assert shown == [[a["label"], a["key"]] for a in merged["aliases"]]
    # The download is the API's CSV of the same list.
    topics_csv = await download(page, "Download topics CSV")
    async with await seeded.get("/v1/topics", params={"limit": "20", "format": "csv"}) as r:
        assert topics_csv == await r.read()
    assert rows_of(topics_csv)[0][4:] == ["name", "label", "key", "posts", "mentions", "aliases"]
    await screenshots(page, "overview")
    tab.assert_clean()


async def test_switch_to_raw_entities_and_back(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/?view=publication&publication=Al+Jazeera")
    page = tab.page
    query = {"publication": "Al Jazeera", "limit": "20"}
    topics = (await seeded.get_json("/v1/topics", params=query))["topics"]
    assert [(d["label"], d["key"]) for d in await bars(page)] == [
        (t["label"], t["key"]) for t in topics
    ]
    # The outlet is not its own topic.
    assert not any("jazeera" in t["key"] for t in topics)
    await page.get_by_label("Entities as spaCy found them").check()
    await page.wait_for_url(lambda url: "as=entities" in url)
    await settled(page)
    entities = (await seeded.get_json("/v1/entities", params=query))["entities"]
    drawn = await bars(page)
    assert [(d["text"], d["label"], d["key"], d["posts"], d["mentions"]) for d in drawn] == (
        api_entities(entities)
    )
    assert any("jazeera" in e["key"] for e in entities)
    assert await page.locator(".results details.aliases").count() == 0
    entities_csv = await download(page, "Download CSV")
    assert rows_of(entities_csv)[0][4:] == ["text", "label", "key", "posts", "mentions"]
    # The choice follows the visitor to another view, and back.
    await page.get_by_role("link", name="Compare", exact=True).click()
    await page.wait_for_url(lambda url: "view=compare" in url and "as=entities" in url)
    await settled(page)
    await page.get_by_label("Topics", exact=True).check()
    await page.wait_for_url(lambda url: "view=compare" in url and "as=entities" not in url)
    await settled(page)
    tab.assert_clean()


async def test_compare_and_entity_views_on_topics(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/?view=compare&publication=CNN&publication=Al+Jazeera")
    page = tab.page
    lists = {
        name: {
            (t["label"], t["key"]): t["posts"]
            for t in (
                await seeded.get_json("/v1/topics", params={"publication": name, "limit": "1000"})
            )["topics"]
        }
        for name in ("CNN", "Al Jazeera")
    }
    shared = await page.eval_on_selector_all(
        "table.shared tbody tr", "rows => rows.map(r => [r.dataset.label, r.dataset.key])"
    )
    assert shared, "CNN and Al Jazeera share topics"
    for label, key in shared:
        assert (label, key) in lists["CNN"] and (label, key) in lists["Al Jazeera"]
    # Topic keys, not strings: "US" is counted as the United States.
    assert ["GPE", "united states"] in shared and ["GPE", "us"] not in shared
    # The service compares topics, so dates apply: the shares shown are its, in the range.
    dated = await open_tab(
        seeded.url + "/?view=compare&publication=CNN&publication=Al+Jazeera"
        "&since=2017-03-01&until=2017-03-20"
    )
    query = [("publication", "CNN"), ("publication", "Al Jazeera"), ("since", "2017-03-01"),
             ("until", "2017-03-20"), ("limit", "10"), ("kind", "topics")]  # fmt: skip
    answer = await seeded.get_json("/v1/compare", params=[*query, ("sort", "shared")])
    whole = await seeded.get_json("/v1/compare", params=[*query[:2], *query[4:]])
    assert answer["publications"] != whole["publications"]
    on_screen = await dated.page.eval_on_selector_all(
        "table.shared tbody tr",
        "rows => rows.map(r => [r.dataset.key,"
        " [...r.querySelectorAll('data.share')].map(d => d.value)])",
    )
    assert on_screen == [
        [e["key"], [f"{100 * e['share'][n]:.1f}" for n in ("CNN", "Al Jazeera")]]
        for e in answer["entities"]
    ]
    assert answer["entities"]
    asked = [u for u in dated.requests if "/v1/compare" in u]
    assert asked and all("kind=topics" in u and "since=2017-03-01" in u for u in asked)
    assert await dated.page.locator("table.shared thead th").first.inner_text() == "Topic"
    data = await download(dated.page, "Download shared CSV")
    assert data == await api_bytes(
        seeded, "/v1/compare", [*query, ("sort", "shared"), ("format", "csv")]
    )
    dated.assert_clean()
    await screenshots(page, "compare-topics", phone_too=False)
    # The entity view of a topic: its timeline is the topic's.
    await changed(
        page,
        page.locator(
            "table.shared a",
            has_text=next(
                t["name"]
                for t in (
                    await seeded.get_json(
                        "/v1/topics", params={"publication": "CNN", "limit": "1000"}
                    )
                )["topics"]
                if (t["label"], t["key"]) == ("GPE", "united states")
            ),
        ).first.click(),
        view=["entity"],
        key=["united states"],
    )
    want = await seeded.get_json(
        "/v1/topics/timeline",
        params=[
            ("label", "GPE"),
            ("key", "united states"),
            ("publication", "CNN"),
            ("publication", "Al Jazeera"),
            ("interval", "week"),
        ],
    )
    shown = await page.eval_on_selector_all(
        "ul.multiples li",
        "items => items.map(li => [li.dataset.publication,"
        " Number(li.querySelector('data.total').value)])",
    )
    assert shown == [
        [s["publication"], sum(p["posts"] for p in s["points"])] for s in want["series"]
    ]
    tab.assert_clean()
