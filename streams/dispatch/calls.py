"""The voice calls a worker has placed, until answering-machine detection says who answered."""

from __future__ import annotations

from collections import OrderedDict

from channels.base import Message


class LiveCalls:
    """Calls placed by this worker and not yet answered: detection's verdict picks the words.

    In memory and bounded: a call lasts minutes. A verdict that reaches another
    worker (a rebalance in between) finds nothing here, and the call keeps
    saying only the voicemail-safe message.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._calls: OrderedDict[str, Message] = OrderedDict()
        self._size = size

    def add(self, call_sid: str, message: Message) -> None:
        self._calls[call_sid] = message
        while len(self._calls) > self._size:
            self._calls.popitem(last=False)

    def pop(self, call_sid: str) -> Message | None:
        return self._calls.pop(call_sid, None)
