"""The session's event bus: every subscriber (a view) sees every event, in order."""

from __future__ import annotations

from collections.abc import Callable

from trainboard.backend import events as ev

Subscriber = Callable[[ev.Event], None]


class EventBus:
    """Synchronous fan-out: every subscriber sees every event, in order.

    A subscriber that raises (a view's bug) never stops the run or its teardown:
    its first exception is kept in :attr:`failure`, and the session ends with exit 3.
    """

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.failure: BaseException | None = None

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def emit(self, event: ev.Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception as exc:
                if self.failure is None:
                    self.failure = exc
