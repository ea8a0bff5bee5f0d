"""Reading a request's body without letting a malformed one become a 500.

A body that is not what the endpoint takes (not UTF-8, not a form, JSON nested
past intake's limits, numbers out of range) is answered with a 4xx that says
so; the views call these after they have authenticated the request, wherever
the check can come first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from faust.web import Request
from multidict import MultiDict

from schemas.intake import Rejection, read_within_limits

MAX_FIELDS = 200
"""A form with more fields is refused: none of ours has more than a few dozen."""


class BadBody(ValueError):
    """The body cannot be read as this endpoint's kind; `status` is the 4xx to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.status = reason, status


async def form(request: Request) -> MultiDict[str]:
    """An `application/x-www-form-urlencoded` body as fields; BadBody otherwise."""
    kind = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadBody("the body must be application/x-www-form-urlencoded", 415)
    raw: bytes = await request.read()
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise BadBody("the form is not UTF-8") from None
    except ValueError:
        raise BadBody(f"the form has more than {MAX_FIELDS} fields") from None
    return MultiDict(pairs)


def json_body(raw: bytes) -> Any:
    """The body's JSON, within intake's limits (depth, numbers, text); BadBody otherwise."""
    found = read_within_limits(raw)
    if isinstance(found, Rejection):
        raise BadBody(found.reason)
    return found
