"""Fairness across partitions (the service's tenants, opaque here: ``CacheScope``).

One FIFO queue for everyone lets one tenant's burst (120 streams) make every other
tenant wait behind all of it. So the waiting queue is a FIFO per partition, and the next
request admitted is the first of the partition with the fewest running sequences, ties
going to the partition served least recently (round robin). Within a partition, order
stays first come, first served; a preempted request goes back to the front of its own
partition's queue.

Admission alone is not enough: once admitted, prompts are computed in the order the
scheduler visits running requests, so that order (``interleaved``) takes one request of
each partition in turn rather than all of the first tenant's first.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator

from chatd.engine.sequence import SequenceGroup

__all__ = ["WaitingQueue", "interleaved", "load"]


class WaitingQueue:
    """Waiting requests, one FIFO per partition."""

    def __init__(self) -> None:
        self._queues: dict[str, deque[SequenceGroup]] = {}
        # When each partition with waiting requests was last served (admitted from).
        self._served: dict[str, int] = {}
        self._clock = 0

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __bool__(self) -> bool:
        return bool(self._queues)

    def __iter__(self) -> Iterator[SequenceGroup]:
        for q in list(self._queues.values()):
            yield from q

    def append(self, req: SequenceGroup) -> None:
        self._queues.setdefault(req.partition, deque()).append(req)

    def extend(self, requests: Iterable[SequenceGroup]) -> None:
        for req in requests:
            self.append(req)

    def appendleft(self, req: SequenceGroup) -> None:
        """A preempted request: first of its partition again (it was admitted before
        everything its partition still has waiting)."""
        self._queues.setdefault(req.partition, deque()).appendleft(req)

    def head(self, running: Counter[str]) -> SequenceGroup | None:
        """The request to admit next, given the running sequences per partition: the
        first of the partition with the fewest, ties to the one served least recently."""
        if not self._queues:
            return None
        part = min(self._queues, key=lambda p: (running[p], self._served.get(p, -1)))
        return self._queues[part][0]

    def pop(self, req: SequenceGroup) -> None:
        """``req``, the head of its partition, was admitted."""
        q = self._queues[req.partition]
        assert q[0] is req
        q.popleft()
        self._clock += 1
        self._served[req.partition] = self._clock
        if not q:
            self._forget(req.partition)

    def remove_if(self, drop: Callable[[SequenceGroup], bool]) -> int:
        """Remove the requests ``drop`` says (cancelled ones); how many went."""
        removed = 0
        for part in list(self._queues):
            q = self._queues[part]
            kept = deque(r for r in q if not drop(r))
            removed += len(q) - len(kept)
            if kept:
                self._queues[part] = kept
            else:
                self._forget(part)
        return removed

    def _forget(self, part: str) -> None:
        # A partition with nothing waiting needs no turn: forgetting it keeps the state
        # bounded by the partitions waiting now, however many tenants there are.
        del self._queues[part]
        self._served.pop(part, None)


def load(running: Iterable[SequenceGroup]) -> Counter[str]:
    """Running (unfinished) sequences per partition."""
    out: Counter[str] = Counter()
    for req in running:
        out[req.partition] += len(req.active())
    return out


def interleaved(requests: Iterable[SequenceGroup]) -> list[SequenceGroup]:
    """``requests`` taken one per partition in turn (partitions in order of their first
    request, each partition's own order kept): the order prompts get a step's compute."""
    groups: dict[str, list[SequenceGroup]] = {}
    for req in requests:
        groups.setdefault(req.partition, []).append(req)
    out: list[SequenceGroup] = []
    depth = max((len(g) for g in groups.values()), default=0)
    for i in range(depth):
        out.extend(g[i] for g in groups.values() if i < len(g))
    return out
