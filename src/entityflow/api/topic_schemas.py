"""What the topic endpoints take and give (DESIGN.md "Topics"); see schemas.py for the rest."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, RootModel

from entityflow.api.edge import QueryModel
from entityflow.api.schemas import Response


class SuggestionsQuery(QueryModel):
    min_share: Annotated[
        float,
        Field(
            ge=0.5,
            le=1.0,
            description="Least share of the posts of all full names ending in the alias's word"
            " that the suggested full name must have.",
        ),
    ] = 0.8


class TopicAlias(Response):
    text: str
    label: str
    key: str
    mentions: int


class TopicRow(Response):
    name: Annotated[str, Field(description="The display text of its most mentioned alias.")]
    label: str
    key: str
    posts: Annotated[int, Field(description="Distinct posts, through any alias.")]
    mentions: int
    aliases: list[TopicAlias]


class Topics(Response):
    topics: list[TopicRow]


class SuggestedTopic(Response):
    name: str
    label: str
    key: str
    posts: int
    mentions: int


class FullName(Response):
    name: str
    key: str
    posts: int


class Evidence(Response):
    share: Annotated[float, Field(description="The suggested topic's share of the posts.")]
    full_names: list[FullName]
    reason: str


class Suggestion(Response):
    into: SuggestedTopic
    alias: SuggestedTopic
    evidence: Evidence


class Suggestions(RootModel[list[Suggestion]]):
    """Merges the rules did not make, most posts first; accept them into the rules file."""
