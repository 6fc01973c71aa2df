"""What an engine streams during a push, a pull or a load: JSON messages read as the engine could get them wrong
or a hostile one could craft them, never a traceback."""

from __future__ import annotations

from typing import Any

import pytest

from shipper.engine.messages import error_said, follow
from shipper.engine.quickget import BadAnswer
from shipper.errors import ShipperError


def test_progress_fields_of_the_wrong_kind_are_passed_over() -> None:
    seen: list[int] = []
    messages: list[Any] = [
        {"id": "l1", "status": "Pushing", "progressDetail": {"current": "lots", "total": None}},
        {"id": "l1", "status": "Pushing", "progressDetail": "halfway"},
        {"id": "l1", "status": "Pushing", "progressDetail": {"current": float("inf")}},
        {"id": "l1", "status": "Pushing", "progressDetail": {"current": 5, "total": 10}},
        {"aux": {"Digest": "sha256:" + "a" * 64}},
    ]
    assert follow(messages, "push x", seen.append) == {"Digest": "sha256:" + "a" * 64}
    assert seen == [5]


def test_a_message_that_is_not_an_object_is_a_bad_answer() -> None:
    with pytest.raises(BadAnswer, match="a message of the engine's push x is not a JSON object"):
        follow([{"status": "Pushing"}, ["not", "an", "object"]], "push x", None)


@pytest.mark.parametrize(
    "message, said",
    [
        ({"errorDetail": "disk full"}, "disk full"),
        ({"errorDetail": {"message": ["a", "list"]}, "error": "denied"}, "denied"),
        ({"errorDetail": {"message": "unauthorized: authentication required"}}, "unauthorized: authentication required"),
        ({"error": 42}, "42"),
    ],
)
def test_an_error_in_any_shape_is_read_as_the_engines_words(message: dict[str, Any], said: str) -> None:
    assert error_said(message) == said
    with pytest.raises(ShipperError):
        follow([message], "pull x", None)
