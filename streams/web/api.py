"""The preferences API for the bank's own systems (`/api/v1/customers/{id}/preferences`).

`GET` answers from the worker that owns the customer (streams/web/reads.py);
`PUT` validates the body with the same model producers use and writes a
`customer.preferences.updated` event: it answers 202, and the change is in
the state once the engine has read the event (milliseconds, usually). Every
request needs one of the keys in `CLARION_API_KEYS`, as `Authorization:
Bearer <key>` or `X-Api-Key: <key>`. The OpenAPI document is served at
`/api/v1/openapi.json`.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View
from pydantic import ConfigDict, TypeAdapter, ValidationError

from policies.model import PolicySet
from policies.state import ConsentRecord
from schemas.customer import Preferences
from streams.kafka import topics
from streams.runtime.settings import Settings
from streams.web.bodies import BadBody, json_body
from streams.web.reads import CUSTOMER_ID, forwarded, state_reader

_CONSENT = TypeAdapter(ConsentRecord)

log = structlog.get_logger(__name__)

PATH = "/api/v1/customers/{customer_id}/preferences"


class PreferencesUpdate(Preferences):
    """The PUT body: the event's own model, but an unknown field is an error here (a typo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def openapi(policy: PolicySet) -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, its schemas taken from the pydantic models."""
    body = PreferencesUpdate.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = body.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Clarion preferences API",
            "version": "1",
            "description": "Read and change how a customer wants to be reached. Categories in "
            f"this policy set: {', '.join(sorted(policy.categories))}; required ones "
            f"({', '.join(_required(policy)) or 'none'}) cannot be turned off.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            },
            "schemas": {**defs, "PreferencesUpdate": body, **_SCHEMAS},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {PATH: _operations()},
    }


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "details": {"type": "array"}},
        "required": ["error"],
    },
    "CustomerPreferences": {
        "type": "object",
        "properties": {
            "customer_id": {"type": "string"},
            "preferences": {"$ref": "#/components/schemas/PreferencesUpdate"},
            "consents": {"type": "array", "items": {"type": "object"}},
            "required_categories": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Accepted": {
        "type": "object",
        "properties": {"event_id": {"type": "string"}, "status": {"const": "accepted"}},
    },
}


def _answer(text: str, schema: str = "Error") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": text, "content": {"application/json": {"schema": ref}}}


def _operations() -> dict[str, Any]:
    failures = {
        "400": _answer("malformed body or customer id"),
        "401": _answer("no API key, or not one of ours"),
        "422": _answer("the body does not validate (details say which field)"),
        "503": _answer("the customer's partition has no owner yet; retry"),
    }
    parameter = {
        "name": "customer_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": CUSTOMER_ID.pattern},
    }
    body = {"$ref": "#/components/schemas/PreferencesUpdate"}
    return {
        "parameters": [parameter],
        "get": {
            "summary": "The customer's current preferences and consents",
            "responses": {
                "200": _answer("the stored choices", "CustomerPreferences"),
                "404": _answer("no such customer"),
                **failures,
            },
        },
        "put": {
            "summary": "Change preferences: fields present replace, absent ones stay",
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {"202": _answer("written as an event", "Accepted"), **failures},
        },
    }


def install(
    app: faust.App,
    settings: Settings,
    in_force: Callable[[], PolicySet],
    produce: Callable[[str, bytes, bytes], Awaitable[None]],
    customers: Any,
) -> None:
    """`in_force`: the policy set in force now, whose categories the API names."""
    api = _Api(app, settings, in_force, produce, customers)
    documents: dict[str, dict[str, Any]] = {}

    @app.page("/api/v1/openapi.json")
    class OpenApi(View):
        async def get(self, request: Request) -> Response:
            policy = in_force()
            if policy.version not in documents:
                documents[policy.version] = openapi(policy)
            return self.json(documents[policy.version])

    @app.page(PATH)
    class CustomerPreferences(View):
        async def get(self, request: Request, customer_id: str) -> Response:
            return await api.get(self, request, customer_id)

        async def put(self, request: Request, customer_id: str) -> Response:
            return await api.put(self, request, customer_id)


class _Api:
    """What the API's views do, once the request is theirs."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        in_force: Callable[[], PolicySet],
        produce: Callable[[str, bytes, bytes], Awaitable[None]],
        customers: Any,
    ) -> None:
        self.app, self.produce, self.customers, self.in_force = app, produce, customers, in_force
        self.read_state = state_reader(customers)
        secret = settings.api_keys.get_secret_value() if settings.api_keys else ""
        self.keys = [k.encode() for k in secret.split(",") if k]
        self.updates = settings.topic(topics.PREFERENCE_UPDATES)

    def refused(self, view: View, request: Request) -> Response | None:
        if not self.keys:
            return view.json({"error": "the API is not configured (CLARION_API_KEYS)"}, status=503)
        given = request.headers.get("X-Api-Key") or ""
        auth = request.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = auth.removeprefix("Bearer ").strip()
        offered = given.encode("utf-8", "surrogateescape")  # bytes: any header compares
        if not given or not any(hmac.compare_digest(offered, k) for k in self.keys):
            log.warning("api.refused", path=str(request.url.path), why="no or unknown API key")
            return view.json({"error": "a valid API key is required"}, status=401)
        return None

    async def get(self, view: View, request: Request, customer_id: str) -> Response:
        problem = self.refused(view, request) or _bad_customer(view, customer_id)
        if problem is not None:
            return problem
        remote = await forwarded(self.app, view, request, customer_id, self.customers)
        if remote is not None:
            return remote
        state = self.read_state(customer_id)
        if state is None:
            return view.json({"error": f"no customer {customer_id}"}, status=404)
        consents = [_CONSENT.dump_python(c, mode="json") for c in state.consents.values()]
        return view.json(
            {
                "customer_id": customer_id,
                "preferences": state.preferences.model_dump(mode="json", exclude_none=True),
                "consents": consents,
                "required_categories": _required(self.in_force()),
            }
        )

    async def put(self, view: View, request: Request, customer_id: str) -> Response:
        problem = self.refused(view, request) or _bad_customer(view, customer_id)
        if problem is not None:
            return problem
        try:
            body = json_body(await request.read())
        except BadBody as exc:
            return view.json(
                {"error": f"the body is not JSON we can read: {exc.reason}"}, status=400
            )
        if not isinstance(body, dict):
            return view.json({"error": "the body must be a JSON object"}, status=400)
        try:
            update = PreferencesUpdate.model_validate(body)
        except ValidationError as exc:
            details = [
                {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                for e in exc.errors(include_url=False)
            ]
            return view.json({"error": "invalid preferences", "details": details}, status=422)
        event_id = f"api-{uuid.uuid4().hex}"
        value = preferences_event(event_id, customer_id, update, "clarion.api")
        await self.produce(self.updates, customer_id.encode(), value)
        log.info("api.preferences_updated", customer_id=customer_id, event_id=event_id)
        return view.json({"event_id": event_id, "status": "accepted"}, status=202)


def _bad_customer(view: View, customer_id: str) -> Response | None:
    if CUSTOMER_ID.fullmatch(customer_id):
        return None
    return view.json(
        {"error": f"not a customer id: it must match {CUSTOMER_ID.pattern}"}, status=400
    )


def _required(policy: PolicySet) -> list[str]:
    return sorted(name for name, c in policy.categories.items() if c.required)


def preferences_event(event_id: str, customer_id: str, update: Preferences, source: str) -> bytes:
    """A `customer.preferences.updated` event (also what the preference page writes)."""
    return json.dumps(
        {
            "event_id": event_id,
            "type": "customer.preferences.updated",
            "occurred_at": datetime.now(UTC).isoformat(),
            "customer_id": customer_id,
            "source": source,
            "data": update.model_dump(mode="json", exclude_unset=True),
        }
    ).encode()
