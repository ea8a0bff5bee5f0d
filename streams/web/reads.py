"""Reading one customer's state from a web request, on the worker that owns it.

A customer's state lives in the `customers` table on the worker that owns the
customer's partition. A read that reaches another worker is forwarded there
(Faust's router, by the partition assignor's map of `canonical_url`s, which is
`http://<web_host>:<web_port>`: give each worker an address the others reach).
Writes never need this: they are events, and any worker can produce them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from yarl import URL

from policies.state import CustomerState
from schemas.types import CUSTOMER_ID_PATTERN
from streams.intake import stored

CUSTOMER_ID = re.compile(CUSTOMER_ID_PATTERN)
"""What a customer id looks like: the pattern intake checks producers' events against."""

ReadState = Callable[[str], CustomerState | None]


def state_reader(customers: Any) -> ReadState:
    def read(customer_id: str) -> CustomerState | None:
        return stored.state(customers.get(customer_id))

    return read


async def forwarded(
    app: faust.App, view: View, request: Request, customer_id: str, customers: Any
) -> Response | None:
    """The owner's answer when another worker owns this customer; None when we do.

    Not Faust's `app.router.route_req`: it hashes the table key as the table
    serializes it (JSON, quoted), while producers key Clarion's topics by the raw
    customer id. The owner is found by the raw bytes, as the producers partition.
    """
    topic = customers.changelog_topic.get_topic_name()
    try:
        owner = app.assignor.key_store(topic, customer_id.encode())
    except KeyError:
        return view.json(
            {"error": "the customer's partition has no owner yet (a rebalance?); try again"},
            status=503,
        )
    here = URL(str(app.conf.canonical_url))
    if (owner.host, owner.port) == (here.host, here.port):
        return None
    target = request.url.with_host(owner.host or "").with_port(owner.port)
    async with app.http_client.request(
        method=request.method,
        url=target,
        headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
    ) as answer:
        return view.text(
            await answer.text(), content_type=answer.content_type, status=answer.status
        )
