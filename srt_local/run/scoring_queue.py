"""The student's thread: scores pairs in batches, most urgent first, over the score cache.

The student (llama.cpp) blocks, so it runs in one thread of its own; asyncio workers wait on
futures that the thread resolves. Urgent requests (a sample waits on them) go before prefetched
ones (the originals, queued at the start so the student works while the teacher writes).
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from srt_local.pairs import Pair
from srt_local.store import Store

if TYPE_CHECKING:
    from srt_local.student import PairScore, Student

URGENT, PREFETCH = 0, 1
BATCH_SIZE = 16
_Item = tuple[int, int, Pair, "asyncio.Future[PairScore] | None"]


class StudentScorer:
    """A `Scorer` over a loaded `Student` and the store's score cache; closes the student."""

    def __init__(
        self,
        student: Student,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        # Imported here, not in the thread, so that a broken install fails the run loudly.
        from srt_local.scoring import score_cached

        self.student = student
        self.store = store
        self.loop = loop
        self.batch_size = batch_size
        self.score_cached = score_cached
        self.items: queue.PriorityQueue[_Item] = queue.PriorityQueue()
        self.counter = itertools.count()
        self.stopping = threading.Event()
        self._tokens = 0
        self.thread = threading.Thread(target=self._loop, name="srt-student", daemon=True)
        self.thread.start()

    @property
    def tokens(self) -> int:
        return self._tokens

    async def score(self, pair: Pair) -> PairScore:
        future: asyncio.Future[PairScore] = self.loop.create_future()
        self.items.put((URGENT, next(self.counter), pair, future))
        return await future

    def prefetch(self, pairs: Sequence[Pair]) -> None:
        for pair in pairs:
            self.items.put((PREFETCH, next(self.counter), pair, None))

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        self.student.close()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                first = self.items.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self.items.get_nowait())
                except queue.Empty:
                    break
            live = [item for item in batch if item[3] is None or not item[3].cancelled()]
            if live:
                self._score(live)

    def _score(self, live: list[_Item]) -> None:
        base = self._tokens

        def count(_samples: int, tokens: int) -> None:
            self._tokens = base + tokens

        try:
            scores = self.score_cached(
                self.student, [item[2] for item in live], self.store, progress=count
            )
        except BaseException as exc:
            # An urgent request raises in the sample that waits on it, which fails the run.
            for item in live:
                if item[3] is not None:
                    self.loop.call_soon_threadsafe(_set_exception, item[3], exc)
            return
        for item, score in zip(live, scores, strict=True):
            if item[3] is not None:
                self.loop.call_soon_threadsafe(_set_result, item[3], score)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
