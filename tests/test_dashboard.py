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
from entityflow.server import build_app
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


async def download(page: Page, button: str) -> str:
    async with page.expect_download() as info:
        await page.get_by_role("button", name=button).click()
    return await _read(await info.value)


async def _read(done: Download) -> str:
    path = await done.path()
    return (await asyncio.to_thread(Path(path).read_bytes)).decode("utf-8")


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


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
    async with await seeded.get("/v1/entities", params={"limit": "20", "format": "csv"}) as r:
        assert entities_csv == await r.text()
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
    await changed(
        page, page.get_by_label("From", exact=True).dispatch_event("change"), since=["2017-03-01"]
    )
    chosen = await matches_api(
        label=["PERSON", "ORG"], sort="mentions", limit="7", since="2017-03-01"
    )
    assert len(chosen) == 7
    assert [d["mentions"] for d in chosen] == sorted((d["mentions"] for d in chosen), reverse=True)
    assert chosen != people[:7]

    # The CSV is what is on screen, byte for byte what the API's own CSV says.
    text = await download(page, "Download CSV")
    query = "publication=CNN&label=PERSON&label=ORG&sort=mentions&limit=7&since=2017-03-01"
    async with await seeded.get(f"/v1/entities?{query}&format=csv") as response:
        assert text == await response.text()
    assert [row[2] for row in rows_of(text)[1:]] == [d["key"] for d in chosen]
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
    await changed(
        page, page.get_by_label("To", exact=True).dispatch_event("change"), until=["2016-01-31"]
    )
    assert await page.locator(".results .bars").count() == 0
    await page.get_by_text("Nothing matches these filters").wait_for()

    # Back returns to the previous state of the view.
    await page.go_back()
    await page.wait_for_url(lambda url: "until" not in url)
    await settled(page)
    assert await page.get_by_label("From", exact=True).input_value() == "2016-01-01"
    assert await page.locator(".results .bars li").count() == 7
    tab.assert_clean()
    again.assert_clean()


def compare_expected(
    names: list[str], posts: dict[str, int], lists: dict[str, list[dict[str, Any]]], limit: int
) -> tuple[list[tuple[str, list[str]]], dict[str, list[tuple[str, str, str]]]]:
    """The compare view's two rankings, computed here independently from the API's answers."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    texts: dict[tuple[str, str], str] = {}
    for name in names:
        for e in lists[name]:
            counts.setdefault((e["label"], e["key"]), {})[name] = e["posts"]
            texts.setdefault((e["label"], e["key"]), e["text"])

    def share(entity: tuple[str, str], name: str) -> float:
        return counts[entity].get(name, 0) / posts[name]

    shared = sorted(
        (e for e in counts if all(counts[e].get(n, 0) > 0 for n in names)),
        key=lambda e: (-min(share(e, n) for n in names), texts[e]),
    )[:limit]
    shared_rows = [(e[1], [f"{100 * share(e, n):.1f}" for n in names]) for e in shared]
    distinctive = {}
    for name in names:
        others = [n for n in names if n != name]

        def lift(e: tuple[str, str], name: str = name, others: list[str] = others) -> float:
            return share(e, name) - sum(share(e, n) for n in others) / len(others)

        ranked = sorted(
            (e for e in counts if counts[e].get(name, 0) > 0 and round(lift(e) * 1e9) > 0),
            key=lambda e: (-round(lift(e) * 1e9), -share(e, name), texts[e]),
        )[:limit]
        distinctive[name] = [
            (e[1], f"{100 * share(e, name):.1f}", f"{100 * lift(e):.1f}") for e in ranked
        ]
    return shared_rows, distinctive


async def test_compare_shared_and_distinctive(seeded: Service, open_tab: OpenTab) -> None:
    tab = await open_tab(seeded.url + "/?view=compare&publication=BBC&publication=TASS&as=entities")
    page = tab.page
    publications = {p["name"]: p["posts"] for p in await seeded.get_json("/v1/publications")}
    assert (
        "share minus the mean share in the others" in await page.locator(".view-head").inner_text()
    )

    async def shown_matches(names: list[str], limit: int = 10) -> list[list[str]]:
        lists = {
            name: (
                await seeded.get_json("/v1/entities", params={"publication": name, "limit": "1000"})
            )["entities"]
            for name in names
        }
        shared, distinctive = compare_expected(names, publications, lists, limit)
        assert shared, "real news from two publications shares some entities"
        on_screen_shared = await page.eval_on_selector_all(
            "table.shared tbody tr",
            "rows => rows.map(r => [r.dataset.key,"
            " [...r.querySelectorAll('data.share')].map(d => d.value)])",
        )
        assert [tuple(row) for row in on_screen_shared] == shared
        headers = await page.locator("table.shared thead th").all_inner_texts()
        assert headers == ["Entity", *names]
        for name in names:
            section = page.locator(f'section.distinctive[data-publication="{name}"]')
            on_screen = await section.locator("li").evaluate_all(
                "items => items.map(li => [li.dataset.key,"
                " li.querySelector('data.share').value, li.querySelector('data.lift').value])"
            )
            assert on_screen == [list(row) for row in distinctive[name]]
        text = await download(page, "Download CSV")
        table = rows_of(text)
        assert table[0][:3] == ["section", "publication", "text"]
        csv_shared = [row for row in table[1:] if row[0] == "shared"]
        assert [row[7] for row in csv_shared] == [s for _, shares in shared for s in shares]
        for name in names:
            got = [(r[4], r[7], r[9]) for r in table[1:] if r[:2] == ["distinctive", name]]
            assert got == distinctive[name]
        return table

    two = await shown_matches(["BBC", "TASS"])
    await changed(
        page,
        page.get_by_role("checkbox", name="CNN").check(),
        publication=["BBC", "CNN", "TASS"],
    )
    three = await shown_matches(["BBC", "CNN", "TASS"])
    assert three != two
    assert await page.locator("section.distinctive").count() == 3
    await screenshots(page, "compare")

    again = await open_tab(page.url)
    assert await again.page.get_by_role("checkbox", name="CNN").is_checked()
    assert await again.page.locator("section.distinctive").count() == 3
    assert (
        await again.page.locator("table.shared").inner_text()
        == await page.locator("table.shared").inner_text()
    )

    # One publication is not a comparison: the page says what it needs.
    await page.get_by_role("checkbox", name="CNN").uncheck()
    await changed(page, page.get_by_role("checkbox", name="TASS").uncheck(), publication=["BBC"])
    await page.get_by_text("Pick two to four publications").wait_for()
    tab.assert_clean()
    again.assert_clean()


async def test_entity_timeline(seeded: Service, open_tab: OpenTab) -> None:
    entity = (await seeded.get_json("/v1/entities", params={"label": "PERSON", "limit": "1"}))[
        "entities"
    ][0]
    url = f"{seeded.url}/?view=entity&label=PERSON&key={entity['key']}&as=entities"
    tab = await open_tab(url)
    page = tab.page
    assert await page.locator("h1").inner_text() == entity["text"]

    async def matches_api(interval: str, measure: str = "posts") -> list[list[str]]:
        body = await seeded.get_json(
            "/v1/entities/timeline",
            params={"label": "PERSON", "key": entity["key"], "interval": interval},
        )
        series = [s for s in body["series"] if s["points"]]
        totals = await page.eval_on_selector_all(
            ".multiples li",
            "items => items.map(li => [li.dataset.publication,"
            " Number(li.querySelector('data.total').value)])",
        )
        assert totals == [[s["publication"], sum(p[measure] for p in s["points"])] for s in series]
        bars_drawn = await page.locator(".multiples li").first.locator("rect").count()
        assert bars_drawn == len(series[0]["points"])
        text = await download(page, "Download CSV")
        table = rows_of(text)
        assert table[0] == [f"{interval}_starting", *(s["publication"] for s in series)]
        assert table[1:] == [
            [point["date"], *(str(s["points"][i][measure]) for s in series)]
            for i, point in enumerate(series[0]["points"])
        ]
        await page.get_by_text("The numbers as a table").click()
        shown = await page.locator("table.timeline tbody tr").evaluate_all(
            "rows => rows.map(r => [r.querySelector('time').dateTime,"
            " ...[...r.querySelectorAll('data')].map(d => d.value)])"
        )
        assert shown == table[1:]
        return table

    weekly = await matches_api("week")
    assert entity["posts"] == sum(int(v) for row in weekly[1:] for v in row[1:])
    await changed(page, page.get_by_label("Month", exact=True).check(), interval=["month"])
    monthly = await matches_api("month")
    assert len(monthly) < len(weekly)
    await changed(page, page.get_by_label("Mentions", exact=True).check(), sort=["mentions"])
    await matches_api("month", "mentions")
    await screenshots(page, "entity")

    again = await open_tab(page.url)
    assert await again.page.get_by_label("Month", exact=True).is_checked()
    assert (
        await again.page.locator(".multiples").inner_text()
        == await page.locator(".multiples").inner_text()
    )

    # Typing another name shows that entity.
    await page.get_by_label("Name", exact=True).fill("Nobody Atall")
    await changed(page, page.get_by_label("Name", exact=True).press("Enter"), key=["nobody atall"])
    await page.get_by_text("No mentions").first.wait_for()
    tab.assert_clean()
    again.assert_clean()


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
    assert (await _read(await info.value)).startswith("month_starting,")

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


async def test_downloads_never_begin_a_cell_with_a_formula(
    open_tab: OpenTab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app = build_app(make_settings(tmp_path_factory.mktemp("formulas")))
    async with serve_app(app) as url, aiohttp.ClientSession() as http:
        svc = Service(url, app, http)
        await seed_formulas(svc)
        tab = await open_tab(url + "/?as=entities")
        publications = rows_of(await download(tab.page, "Download publications CSV"))
        entities_text = await download(tab.page, "Download entities CSV")
        entities = rows_of(entities_text)
        cells = [cell for row in publications + entities for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
        escaped = sorted("'" + text for text in FORMULAS)
        assert sorted(row[0] for row in publications[1:]) == escaped
        assert sorted(row[0] for row in entities[1:]) == escaped
        # The same rule as the API's CSV, byte for byte; the page shows the true text.
        async with await svc.get("/v1/entities", params={"limit": "20", "format": "csv"}) as r:
            assert entities_text == await r.text()
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
        assert topics_csv == await r.text()
    assert rows_of(topics_csv)[0] == ["name", "label", "key", "posts", "mentions", "aliases"]
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
    assert rows_of(entities_csv)[0] == ["text", "label", "key", "posts", "mentions"]
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
