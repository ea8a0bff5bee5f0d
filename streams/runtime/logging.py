"""structlog set-up: key-value events, JSON in production, readable in the demo.

Phone numbers and email addresses are masked by a processor that looks at every
value, so a module that logs a recipient cannot leak one by forgetting to mask.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PHONE = re.compile(r"\+\d{5,13}(\d{2})")
"""Every E.164 length: 7 to 15 digits after the +; the last two stay."""
_EMAIL = re.compile(r"([^\s@\"'<>()\[\],;:\\])[^\s@\"'<>()\[\],;:\\]*@([^\s@\"'<>()\[\],;:\\]+)")
"""Anything with an @ between two words, internationalized addresses included: the local
part's first character and the domain stay."""


def mask(text: str) -> str:
    """`+13125550101` -> `+*********01`; `ana@example.com` -> `a***@example.com`."""
    text = _PHONE.sub(lambda m: "+" + "*" * (len(m.group(0)) - 3) + m.group(1), text)
    return _EMAIL.sub(r"\1***@\2", text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


def mask_contact_points(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask phones and emails in every value, nested ones too."""
    return {key: _mask_value(value) for key, value in event_dict.items()}


def configure(fmt: str = "json", level: str = "info") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_contact_points,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
