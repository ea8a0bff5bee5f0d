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
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from policies.state import CustomerState

CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""What a customer id looks like in a URL (the producers' ids: letters, digits, . _ : -)."""

ReadState = Callable[[str], CustomerState | None]


def state_reader(customers: Any) -> ReadState:
    def read(customer_id: str) -> CustomerState | None:
        value = customers.get(customer_id)
        if not value or not value.get("state"):
            return None
        return CustomerState.model_validate(value["state"])

    return read


async def forwarded(
    app: faust.App, view: View, request: Request, customer_id: str
) -> Response | None:
    """The owner's answer when another worker owns this customer; None when we do."""
    try:
        return await app.router.route_req("customers", customer_id, view.web, request)
    except SameNode:
        return None
    except (ServiceUnavailable, KeyError):
        return view.json(
            {"error": "the customer's partition has no owner yet (a rebalance?); try again"},
            status=503,
        )
