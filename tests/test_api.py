"""The HTTP contract of DESIGN.md: auth, errors, backpressure and query semantics."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import orjson
import pytest

from entityflow.models import EntityCount, PostRecord, ProcessedPost
from tests.conftest import API_KEY, Service, ServiceFactory

GOOD = {"publication": "BBC", "content": "Angela Merkel visited Paris."}


async def expect_error(response: Any, status: int, code: str, mentions: str = "") -> Any:
    async with response:
        assert response.status == status, await response.text()
        assert response.content_type == "application/json"
        error = (await response.json())["error"]
        assert error["code"] == code
        assert (
            mentions.lower() in (error["message"] + orjson.dumps(error["details"]).decode()).lower()
        )
        return error


# Ingest: bad input, one class per test


async def test_malformed_json(service: ServiceFactory) -> None:
    async with service() as svc:
        response = await svc.post("/v1/posts", data=b'{"publication": "BBC",', headers=_json())
        await expect_error(response, 400, "malformed_json", "not valid JSON")
        response = await svc.post(
            "/v1/posts/batch",
            data=b'{"publication": "x", "content": "y"}\n{oops\n',
            headers={"Content-Type": "application/x-ndjson"},
        )
        await expect_error(response, 400, "malformed_json", "line 2")


async def test_wrong_content_type(service: ServiceFactory) -> None:
    async with service() as svc:
        response = await svc.post(
            "/v1/posts", data=orjson.dumps(GOOD), headers={"Content-Type": "text/plain"}
        )
        await expect_error(response, 415, "unsupported_media_type", "application/json")


async def test_body_over_the_limit(service: ServiceFactory) -> None:
    async with service(max_body_bytes=4096) as svc:
        big = {**GOOD, "content": "x" * 5000}
        await expect_error(await svc.post("/v1/posts", big), 413, "body_too_large", "4096")
        # The service is still fine afterwards.
        async with await svc.post("/v1/posts", GOOD) as response:
            assert response.status == 202


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        ({"content": "text"}, "publication", "required"),
        ({"publication": "BBC"}, "content", "required"),
        ({"publication": "   ", "content": "text"}, "publication", "at least 1"),
        ({"publication": "BBC", "content": "  \n "}, "content", "empty"),
        ({"publication": "B" * 201, "content": "text"}, "publication", "at most 200"),
        ({"publication": "BBC", "content": "x" * 1001}, "content", "at most 1000"),
        ({"publication": 7, "content": "text"}, "publication", "string"),
        ({**GOOD, "title": ["not", "a", "string"]}, "title", "string"),
    ],
)
async def test_missing_empty_or_oversized_fields(
    service: ServiceFactory, body: dict[str, Any], field: str, why: str
) -> None:
    async with service(max_content_chars=1000) as svc:
        error = await expect_error(await svc.post("/v1/posts", body), 422, "validation_error")
        assert error["details"][0]["field"] == field
        assert why.lower() in error["details"][0]["message"].lower()


@pytest.mark.parametrize("bad_id", ["has space", "slash/y", "é", "", "x" * 129])
async def test_bad_id_characters(service: ServiceFactory, bad_id: str) -> None:
    async with service() as svc:
        error = await expect_error(
            await svc.post("/v1/posts", {**GOOD, "id": bad_id}), 422, "validation_error"
        )
        assert error["details"][0]["field"] == "id"


@pytest.mark.parametrize("bad_date", ["2017-13-01", "yesterday", "01/03/2017", 1488326400])
async def test_bad_dates(service: ServiceFactory, bad_date: Any) -> None:
    async with service() as svc:
        error = await expect_error(
            await svc.post("/v1/posts", {**GOOD, "published_at": bad_date}),
            422,
            "validation_error",
            "ISO 8601",
        )
        assert error["details"][0]["field"] == "published_at"


@pytest.mark.parametrize(
    ("published_at", "date"),
    [
        ("2017-03-01", "2017-03-01"),
        ("2017-03-01T23:30:00", "2017-03-01"),  # no zone: UTC
        ("2017-03-01T23:30:00-02:00", "2017-03-02"),  # the UTC date
        ("2017-03-02T00:30:00+01:00", "2017-03-01"),
    ],
)
async def test_a_posts_date_is_the_utc_date(
    service: ServiceFactory, published_at: str, date: str
) -> None:
    async with service() as svc:
        async with await svc.post("/v1/posts", {**GOOD, "published_at": published_at}) as r:
            post_id = (await r.json())["id"]
        assert (await svc.get_json(f"/v1/posts/{post_id}"))["date"] == date


async def test_batch_names_each_bad_item_and_accepts_none(service: ServiceFactory) -> None:
    async with service() as svc:
        batch = [GOOD, {"publication": "BBC"}, {**GOOD, "id": "bad id"}, "not an object"]
        error = await expect_error(
            await svc.post("/v1/posts/batch", batch), 422, "validation_error"
        )
        assert [(d["index"], d["field"]) for d in error["details"]] == [
            (1, "content"),
            (2, "id"),
            (3, None),
        ]
        assert "3 of 4" in error["message"]
        assert not svc.pipeline.pending
        assert await svc.store.publications() == []
        too_many = [GOOD] * 1001
        await expect_error(await svc.post("/v1/posts/batch", too_many), 422, "batch_too_large")
        await expect_error(await svc.post("/v1/posts/batch", []), 422, "validation_error", "empty")
        await expect_error(
            await svc.post("/v1/posts/batch", GOOD), 422, "validation_error", "array"
        )


async def test_ndjson_batch(service: ServiceFactory) -> None:
    async with service() as svc:
        lines = b"\n".join(orjson.dumps({**GOOD, "id": f"n{i}"}) for i in range(3)) + b"\n\n"
        async with await svc.post(
            "/v1/posts/batch", data=lines, headers={"Content-Type": "application/x-ndjson"}
        ) as response:
            assert response.status == 202
            assert await response.json() == {"accepted": 3, "ids": ["n0", "n1", "n2"]}


async def test_unknown_fields_are_ignored(service: ServiceFactory) -> None:
    async with (
        service() as svc,
        await svc.post("/v1/posts", {**GOOD, "id": "u1", "extra": {"a": 1}}) as response,
    ):
        assert response.status == 202
        assert await response.json() == {"id": "u1", "status": "accepted"}


# Auth


async def test_missing_key(service: ServiceFactory) -> None:
    async with service() as svc:
        response = await svc.http.post(svc.url + "/v1/posts", json=GOOD)
        await expect_error(response, 401, "missing_api_key", "X-API-Key")


async def test_wrong_key(service: ServiceFactory) -> None:
    async with service() as svc:
        response = await svc.post("/v1/posts", GOOD, headers={"X-API-Key": "nope"})
        await expect_error(response, 401, "invalid_api_key")


async def test_any_configured_key_works(service: ServiceFactory) -> None:
    async with (
        service(api_keys=f"other-key-0123456789,{API_KEY}") as svc,
        await svc.post("/v1/posts", GOOD) as response,
    ):
        assert response.status == 202


async def test_reads_open_unless_protected(service: ServiceFactory) -> None:
    async with service() as svc:
        assert (await svc.get("/v1/publications")).status == 200
    async with service(protect_reads=True) as svc:
        await expect_error(await svc.get("/v1/publications"), 401, "missing_api_key")
        await expect_error(await svc.get("/v1/entities"), 401, "missing_api_key")
        ok = await svc.get("/v1/publications", headers={"X-API-Key": API_KEY})
        assert ok.status == 200
        # Health stays open for load balancers and systemd.
        assert (await svc.get("/healthz")).status == 200


# Backpressure


def hold_writes(svc: Service) -> asyncio.Event:
    """Make the store's writes wait for the returned event, so the queue fills and stays full."""
    gate = asyncio.Event()
    original = svc.store.write

    async def held(posts: Any) -> Any:
        await gate.wait()
        return await original(posts)

    svc.store.write = held  # type: ignore[method-assign]
    return gate


async def test_full_queue_answers_503_and_loses_nothing(service: ServiceFactory) -> None:
    async with service(queue_size=4, nlp_batch_size=1, batch_size=1) as svc:
        # Writes wait until every post was sent, so the queue fills however fast NER is (the
        # result cache makes each repeat of one text nearly free).
        gate = hold_writes(svc)
        accepted: list[str] = []
        refused = 0
        for i in range(40):
            async with await svc.post("/v1/posts", {**GOOD, "id": f"b{i}"}) as response:
                if response.status == 202:
                    accepted.append(f"b{i}")
                else:
                    assert response.status == 503
                    assert int(response.headers["Retry-After"]) >= 1
                    assert (await response.json())["error"]["code"] == "queue_full"
                    refused += 1
        assert refused > 0
        gate.set()
        await svc.wait_processed()
        assert await svc.store.stored_ids([f"b{i}" for i in range(40)]) == set(accepted)
        assert (await svc.store.publications())[0].posts == len(accepted)


async def test_a_batch_larger_than_the_free_room_is_refused_whole(service: ServiceFactory) -> None:
    async with service(queue_size=5, nlp_batch_size=1, batch_size=1) as svc:
        gate = hold_writes(svc)
        accepted: set[str] = set()
        for round_ in range(30):
            batch = [{**GOOD, "id": f"r{round_}-{i}"} for i in range(3)]
            async with await svc.post("/v1/posts/batch", batch) as response:
                if response.status == 503:
                    assert (await response.json())["error"]["code"] == "queue_full"
                    break
                assert response.status == 202
                accepted.update((await response.json())["ids"])
        else:
            raise AssertionError("the queue never filled")
        assert set(svc.pipeline.pending) == accepted  # none of the refused batch got in
        gate.set()
        await svc.wait_processed()
        assert (
            await svc.store.stored_ids([f"r{r}-{i}" for r in range(30) for i in range(3)])
            == accepted
        )


async def test_a_batch_larger_than_the_whole_queue_gets_413(service: ServiceFactory) -> None:
    async with service(queue_size=3) as svc:
        batch = [{**GOOD, "id": f"w{i}"} for i in range(5)]
        response = await svc.post("/v1/posts/batch", batch)
        await expect_error(response, 413, "batch_exceeds_queue", "smaller batches")
        assert not svc.pipeline.pending


async def test_draining_service_answers_503(service: ServiceFactory) -> None:
    async with service() as svc:
        await svc.pipeline.drain(5)
        response = await svc.post("/v1/posts", GOOD)
        error = await expect_error(response, 503, "draining")
        assert error
        ready = await svc.get("/readyz")
        assert ready.status == 503
        assert (await ready.json())["draining"] is True


# Queries on known data, written straight into the store


def _post(
    post_id: str, publication: str, day: str, *entities: tuple[str, str, int]
) -> ProcessedPost:
    return ProcessedPost(
        PostRecord(
            id=post_id,
            publication=publication,
            content="-",
            date=day,
            title=f"{post_id} title",
            url=f"https://news.example/{post_id}",
            published_at=f"{day}T09:30:00+00:00",
        ),
        tuple(EntityCount(label, key, key.title(), count) for label, key, count in entities),
    )


KNOWN = [
    _post("k1", "BBC", "2017-03-01", ("PERSON", "trump", 5), ("GPE", "london", 1)),
    _post("k2", "BBC", "2017-03-02", ("PERSON", "trump", 1), ("PERSON", "may", 2)),
    _post("k3", "BBC", "2017-03-09", ("GPE", "london", 1), ("PERSON", "may", 1)),
    _post("k4", "CNN", "2017-03-01", ("PERSON", "trump", 2), ("ORG", "fbi", 7)),
    _post("k5", "CNN", "2017-04-15", ("ORG", "fbi", 1), ("GPE", "london", 1)),
]


async def known(svc: Service) -> None:
    await svc.store.write(KNOWN)


async def top(svc: Service, **params: Any) -> list[tuple[str, int, int]]:
    query = [
        (k, v)
        for k, value in params.items()
        for v in (value if isinstance(value, list) else [value])
    ]
    data = await svc.get_json("/v1/entities", params=query)
    return [(e["key"], e["posts"], e["mentions"]) for e in data["entities"]]


async def test_top_entities_sort_and_limit(service: ServiceFactory) -> None:
    async with service() as svc:
        await known(svc)
        # Ties on the measure go to the other measure, then label and key.
        assert await top(svc) == [
            ("trump", 3, 8),
            ("london", 3, 3),
            ("fbi", 2, 8),
            ("may", 2, 3),
        ]
        assert await top(svc, sort="mentions") == [
            ("trump", 3, 8),
            ("fbi", 2, 8),
            ("london", 3, 3),
            ("may", 2, 3),
        ]
        assert await top(svc, limit=2) == [("trump", 3, 8), ("london", 3, 3)]
        data = await svc.get_json("/v1/entities", params={"limit": "1"})
        assert data == {
            "entities": [
                {"text": "Trump", "label": "PERSON", "key": "trump", "posts": 3, "mentions": 8}
            ]
        }


async def test_top_entities_filters(service: ServiceFactory) -> None:
    async with service() as svc:
        await known(svc)
        assert await top(svc, publication="CNN") == [
            ("fbi", 2, 8),
            ("trump", 1, 2),
            ("london", 1, 1),
        ]
        assert await top(svc, publication=["CNN", "BBC"]) == await top(svc)
        assert await top(svc, label="PERSON") == [("trump", 3, 8), ("may", 2, 3)]
        assert await top(svc, label=["person", "ORG"]) == [
            ("trump", 3, 8),
            ("fbi", 2, 8),
            ("may", 2, 3),
        ]
        assert await top(svc, since="2017-03-02", until="2017-03-31") == [
            ("may", 2, 3),
            ("london", 1, 1),
            ("trump", 1, 1),
        ]
        assert await top(svc, since="2017-04-01") == [("london", 1, 1), ("fbi", 1, 1)]
        assert await top(svc, until="2017-03-01", publication="BBC") == [
            ("trump", 1, 5),
            ("london", 1, 1),
        ]
        assert await top(svc, since="2018-01-01") == []


async def test_top_entities_csv(service: ServiceFactory) -> None:
    async with service() as svc:
        await known(svc)
        for request in (
            svc.get("/v1/entities", params={"format": "csv", "label": "PERSON"}),
            svc.get("/v1/entities", params={"label": "PERSON"}, headers={"Accept": "text/csv"}),
        ):
            async with await request as response:
                assert response.status == 200
                assert response.content_type == "text/csv"
                assert response.headers["Content-Disposition"] == (
                    'attachment; filename="entityflow-entities_all-publications_person_'
                    'by-posts.csv"'
                )
                body = await response.read()
            # A byte-order mark first, so spreadsheets read the file as UTF-8.
            assert body.startswith(b"\xef\xbb\xbf")
            rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"), newline="")))
            context = {"filter_publication": "all", "filter_since": "", "filter_until": ""}
            assert rows == [
                {**context, "filter_labels": "PERSON", "text": "Trump", "label": "PERSON",
                 "key": "trump", "posts": "3", "mentions": "8"},
                {**context, "filter_labels": "PERSON", "text": "May", "label": "PERSON",
                 "key": "may", "posts": "2", "mentions": "3"},
            ]  # fmt: skip


def counts_only(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "publication": s["publication"],
            "points": [{k: p[k] for k in ("date", "posts", "mentions")} for p in s["points"]],
        }
        for s in series
    ]


async def test_timeline(service: ServiceFactory) -> None:
    async with service() as svc:
        await known(svc)
        data = await svc.get_json(
            "/v1/entities/timeline", params={"label": "GPE", "key": "London", "interval": "month"}
        )
        assert (data["label"], data["key"], data["interval"]) == ("GPE", "london", "month")
        assert data["omitted"] == 0
        assert counts_only(data["series"]) == [
            {
                "publication": "BBC",
                "points": [
                    {"date": "2017-03-01", "posts": 2, "mentions": 2},
                    {"date": "2017-04-01", "posts": 0, "mentions": 0},
                ],
            },
            {
                "publication": "CNN",
                "points": [
                    {"date": "2017-03-01", "posts": 0, "mentions": 0},
                    {"date": "2017-04-01", "posts": 1, "mentions": 1},
                ],
            },
        ]
        # Beside each count, the posts the outlet published in the period, and the share.
        shares = [[(p["published"], p["share"]) for p in s["points"]] for s in data["series"]]
        assert shares == [[(3, 2 / 3), (0, 0.0)], [(1, 0.0), (1, 1.0)]]
        weekly = await svc.get_json(
            "/v1/entities/timeline",
            params=[("label", "PERSON"), ("key", "trump"), ("interval", "week"),
                    ("publication", "BBC"), ("since", "2017-02-27"), ("until", "2017-03-12")],
        )  # fmt: skip
        assert counts_only(weekly["series"]) == [
            {
                "publication": "BBC",
                "points": [
                    {"date": "2017-02-27", "posts": 2, "mentions": 6},
                    {"date": "2017-03-06", "posts": 0, "mentions": 0},
                ],
            }
        ]
        end_of_time = await svc.get_json(
            "/v1/entities/timeline",
            params={"label": "PERSON", "key": "x", "interval": "month", "since": "9999-11-20"},
        )
        assert end_of_time["series"] == []
        last_months = await svc.get_json(
            "/v1/entities/timeline",
            params=[("label", "PERSON"), ("key", "x"), ("interval", "month"),
                    ("publication", "BBC"), ("since", "9999-11-20"), ("until", "9999-12-31")],
        )  # fmt: skip
        assert [p["date"] for p in last_months["series"][0]["points"]] == [
            "9999-11-01",
            "9999-12-01",
        ]
        daily = await svc.get_json(
            "/v1/entities/timeline", params={"label": "ORG", "key": "fbi", "until": "2017-03-02"}
        )
        assert daily["interval"] == "day"
        # Outlets that published in the range but never mention it are there too, at zero.
        assert counts_only(daily["series"]) == [
            {
                "publication": "BBC",
                "points": [
                    {"date": "2017-03-01", "posts": 0, "mentions": 0},
                    {"date": "2017-03-02", "posts": 0, "mentions": 0},
                ],
            },
            {
                "publication": "CNN",
                "points": [
                    {"date": "2017-03-01", "posts": 1, "mentions": 7},
                    {"date": "2017-03-02", "posts": 0, "mentions": 0},
                ],
            },
        ]


async def test_publications(service: ServiceFactory) -> None:
    async with service() as svc:
        await known(svc)
        assert await svc.get_json("/v1/publications") == [
            {"name": "BBC", "posts": 3, "first_date": "2017-03-01", "last_date": "2017-03-09"},
            {"name": "CNN", "posts": 2, "first_date": "2017-03-01", "last_date": "2017-04-15"},
        ]


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/v1/entities", {"publication": "Nope"}, "publication"),
        ("/v1/entities", {"label": "PEOPLE"}, "label"),
        ("/v1/entities", {"limit": "0"}, "limit"),
        ("/v1/entities", {"limit": "1001"}, "limit"),
        ("/v1/entities", {"limit": "ten"}, "limit"),
        ("/v1/entities", {"sort": "random"}, "sort"),
        ("/v1/entities", {"since": "2017-02-30"}, "since"),
        ("/v1/entities", {"since": "2017-03-05", "until": "2017-03-01"}, "since"),
        ("/v1/entities", {"format": "xml"}, "format"),
        ("/v1/entities", {"labels": "PERSON"}, "labels"),
        ("/v1/entities/timeline", {"key": "trump"}, "label"),
        ("/v1/entities/timeline", {"label": "PERSON"}, "key"),
        ("/v1/entities/timeline", {"label": "PERSON", "key": "x", "interval": "year"}, "interval"),
        (
            "/v1/entities/timeline",
            {"label": "PERSON", "key": "x", "since": "0001-01-01", "until": "9999-12-31"},
            "interval",
        ),
    ],
)
async def test_bad_query_parameters(
    service: ServiceFactory, path: str, params: dict[str, str], name: str
) -> None:
    async with service() as svc:
        await known(svc)
        error = await expect_error(await svc.get(path, params=params), 422, "invalid_parameter")
        assert error["details"][0]["field"] == name
        assert name in error["message"]


async def test_posts_by_id(service: ServiceFactory) -> None:
    async with service() as svc:
        await known(svc)
        assert await svc.get_json("/v1/posts/k4") == {
            "id": "k4",
            "publication": "CNN",
            "date": "2017-03-01",
            "status": "processed",
            "entities": [
                {"text": "Trump", "label": "PERSON", "key": "trump", "count": 2},
                {"text": "Fbi", "label": "ORG", "key": "fbi", "count": 7},
            ],
            "title": "k4 title",
            "url": "https://news.example/k4",
            "author": None,
            "published_at": "2017-03-01T09:30:00+00:00",
            # Written straight into the store without topics; test_topics_api.py has them.
            "topics": [],
        }
        await expect_error(await svc.get("/v1/posts/nope"), 404, "not_found", "nope")


async def test_a_post_is_queued_before_it_is_processed(service: ServiceFactory) -> None:
    async with service() as svc:
        # Hold the writer back so the post stays queued for a moment.
        gate = hold_writes(svc)
        async with await svc.post("/v1/posts", {**GOOD, "id": "q1"}) as response:
            assert response.status == 202
        assert (await svc.get_json("/v1/posts/q1"))["status"] == "queued"
        gate.set()
        await svc.wait_processed()
        assert (await svc.get_json("/v1/posts/q1"))["status"] == "processed"


async def test_unknown_path_and_method(service: ServiceFactory) -> None:
    async with service() as svc:
        await expect_error(await svc.get("/v2/nothing"), 404, "not_found")
        await expect_error(await svc.http.delete(svc.url + "/v1/posts"), 405, "method_not_allowed")


async def test_openapi_document_lists_every_route(service: ServiceFactory) -> None:
    async with service() as svc:
        document = await svc.get_json("/v1/openapi.json")
        routes = {
            (route.method.lower(), route.resource.canonical)
            for route in svc.app.router.routes()
            if route.resource is not None
            and route.resource.canonical.startswith(("/v1/", "/healthz", "/readyz"))
            and route.method != "HEAD"
        }
        documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
        assert routes - {("get", "/v1/openapi.json")} == documented


def _json() -> dict[str, str]:
    return {"Content-Type": "application/json"}
