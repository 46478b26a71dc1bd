from tests.conftest import ServiceFactory


async def test_one_post_round_trip(service: ServiceFactory) -> None:
    async with service() as svc:
        response = await svc.post(
            "/v1/posts",
            {"publication": "BBC", "content": "Angela Merkel visited Paris.", "id": "p1"},
        )
        assert response.status == 202
        await svc.wait_processed()
        post = await svc.get_json("/v1/posts/p1")
        assert post["status"] == "processed"
        assert {(e["label"], e["key"]) for e in post["entities"]} == {
            ("PERSON", "angela merkel"),
            ("GPE", "paris"),
        }
