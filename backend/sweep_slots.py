"""When a sweep's members may start: ``max_parallel`` jobs at a time, and on the local
runner the next members ready before a slot frees.

A slot is what a member's job runs in: one of ``max_parallel``, and in an ssh pool one
host. A member takes it before its job and gives it back when the job has ended, on
the local runner (what a member does after its job, collect, report and teardown,
runs in trainboard's own process), else at the member's end (an ssh host or an ec2
instance is still in use until its teardown).

On the local runner a member is also *prepared* before a slot is free: up to
:data:`LOOKAHEAD` members past the running ones check, make their workspace, sync and
create their MLflow run meanwhile (nothing there costs money), then wait for a slot
(the session's gate before its train stage). A job that ends is followed by the next
at once, not after the next member's tens of milliseconds of checks and MLflow calls.
On the other runners a member takes its slot before anything (provisioning costs).
"""

from __future__ import annotations

import asyncio

LOOKAHEAD = 2  # local members prepared ahead of a free slot


class Slots:
    def __init__(self, parallel: int, hosts: list[str], prepares_ahead: bool) -> None:
        self.parallel = parallel
        self.prepares_ahead = prepares_ahead
        self._slots = asyncio.Semaphore(parallel)
        self._ahead = asyncio.Semaphore(parallel + (LOOKAHEAD if prepares_ahead else 0))
        self._hosts = list(hosts)  # an ssh pool: the hosts free now
        self._holding: dict[int, str] = {}  # members holding a slot: index -> host ("" without a pool)
        self._alive: set[int] = set()  # members holding a place among the launched

    async def launch(self, index: int) -> None:
        """Wait for a place among the launched members (the running ones, and on the local runner
        the ones being prepared)."""
        await self._ahead.acquire()
        self._alive.add(index)

    @property
    def free(self) -> bool:
        """Whether a slot is free now."""
        return not self._slots.locked()

    async def take(self, index: int) -> str:
        """Wait for a slot: the member's host ("" without a pool)."""
        await self._slots.acquire()
        host = self._holding[index] = self._hosts.pop(0) if self._hosts else ""
        return host

    def give_back_slot(self, index: int) -> None:
        """The member's slot (and host) to the next member; its place among the launched too."""
        if index in self._holding:
            host = self._holding.pop(index)
            if host:
                self._hosts.append(host)
            self._slots.release()
        self.leave(index)

    def leave(self, index: int) -> None:
        """The member's place among the launched (it ended, or was skipped)."""
        if index in self._alive:
            self._alive.discard(index)
            self._ahead.release()
