"""Scoring on Ray: student actors on any number of nodes, fed by the driver in batches.

Each actor loads the student once (one GPU each where the cluster has GPUs, else a set number of
CPU threads) and scores the batches it is sent. The driver keeps the score cache and is the only
writer of the store: it answers hits from the store, sends only the misses, keeps at most
`in_flight` batches queued at each actor (back-pressure: the queue of work stays in the driver,
where urgent pairs can pass prefetched ones), and writes each batch's scores in one transaction as
it comes back. So a killed driver loses only the batches in flight, and the next run sends only
what the store lacks.

An actor that dies (`ray.kill`, a crash, a lost node) is restarted by Ray (`max_restarts`); the
batches it held go back to the front of the queue for whichever actor is free, so every pair is
scored and stored once. Scores on CPU do not depend on the batch a pair is scored in, so the
decisions equal a local run's.

Ray binds the address it is given, but rewrites 127.0.0.1 to the machine's network address
unless it believes it runs on one machine only; `_loopback` tells it so for a cluster this
process starts (or joins) on loopback.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import (
    NodeDiedError,
    ObjectLostError,
    RayActorError,
    RayTaskError,
    WorkerCrashedError,
)

from srt_local.config import StudentSpec
from srt_local.executors import LOOPBACK, ExecutorError, Log, RaySettings
from srt_local.pairs import Pair
from srt_local.scoring import lookup_scores, store_scores
from srt_local.store import Store
from srt_local.student import PairScore, Student

URGENT, PREFETCH = 0, 1
MAX_ATTEMPTS = 4  # sends of one batch whose actor died each time before the run fails
OBJECT_STORE_BYTES = 200 * 2**20  # batches are text: no need for Ray's default of 30 % of RAM
POLL_S = 0.05
# Errors that mean the actor or its node went away, not that the student failed on the batch.
LOST = (RayActorError, WorkerCrashedError, NodeDiedError, ObjectLostError)

Callback = Callable[[PairScore | None, BaseException | None], None]


@dataclass(frozen=True)
class ScoreKey:
    """The score cache's key for the student the actors loaded (see `scoring.ScoreKey`)."""

    name: str
    sha256: str
    template: str
    max_tokens: int
    score_path: str  # host or device reduction: scores of the two never mix


class StudentWorker:
    """A Ray actor holding one loaded student; made remote by `open_pool`, not at import."""

    def __init__(self, spec: StudentSpec, expected_sha256: str | None) -> None:
        # llama.cpp's OpenMP threads spin while idle, stealing the cores of the actors beside it.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.student = Student.load(spec)
        if expected_sha256 is not None and self.student.sha256 != expected_sha256:
            found = self.student.sha256
            self.student.close()
            raise ExecutorError(
                f"the student file {spec.path or spec.package} on a Ray worker has sha256 "
                f"{found[:12]}, the run was made with {expected_sha256[:12]}: every node needs "
                "the same model file"
            )

    def key(self) -> ScoreKey:
        s = self.student
        return ScoreKey(s.name, s.sha256, s.template, s.max_tokens, s.score_path)

    def score(self, pairs: list[Pair]) -> tuple[list[PairScore], int]:
        """The pairs' scores in order, and the target tokens scored."""
        tokens = [0]

        def count(_samples: int, done: int) -> None:
            tokens[0] = done

        return self.student.score_pairs(pairs, count), tokens[0]


# ---------------------------------------------------------------- connecting


def _loopback(ip: str | None) -> bool:
    return ip is None or ip in (LOOPBACK, "localhost", "::1")


def connect(settings: RaySettings) -> bool:
    """Join `settings.address`, or start a cluster in this process; True if it was started here.

    A process already connected (a test's cluster, a notebook) is used as it is.
    """
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    from ray._private import ray_constants

    # Ray turns 127.0.0.1 into the machine's address when it thinks it may have peers; this is
    # the switch it reads at every lookup (its own setting for single-machine platforms).
    ray_constants.ENABLE_RAY_CLUSTER = not _loopback(settings.node_ip)
    node_ip = settings.node_ip or (LOOPBACK if settings.address is None else None)
    try:
        if settings.address is None:
            cpus = (settings.workers or 0) * settings.threads or os.cpu_count() or 1
            ray.init(
                address="local",
                num_cpus=cpus,
                _node_ip_address=node_ip,
                include_dashboard=False,
                object_store_memory=OBJECT_STORE_BYTES,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
            return True
        ray.init(
            address=settings.address,
            _node_ip_address=node_ip,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = settings.address or "a local cluster"
        raise ExecutorError(f"cannot start or reach Ray at {where}: {exc}") from None
    return False


def open_pool(
    settings: RaySettings,
    spec: StudentSpec,
    expected_sha256: str | None,
    store: Store | None,
    log: Log,
) -> RayScoringPool:
    """Connect, start the actors and wait until each has loaded the student."""
    started = connect(settings)
    try:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 1))
        workers = settings.workers or (gpus or max(1, cpus // settings.threads))
        # Actors the cluster can never place would wait forever: say so instead.
        if gpus and workers > gpus:
            raise ExecutorError(f"{workers} Ray workers asked for, the cluster has {gpus} GPU(s)")
        if not gpus and workers * settings.threads > cpus:
            raise ExecutorError(
                f"{workers} Ray workers of {settings.threads} thread(s) need "
                f"{workers * settings.threads} CPUs, the cluster has {cpus}"
            )
        options: dict[str, Any] = {
            "num_cpus": 1 if gpus else settings.threads,
            "num_gpus": 1 if gpus else 0,
            "max_restarts": settings.max_restarts,
            # A batch lost with its actor is sent again by the driver, to any actor.
            "max_task_retries": 0,
        }
        remote: Any = ray.remote(StudentWorker).options(**options)
        actor_spec = replace(spec, n_threads=settings.threads)
        actors: list[Any] = [remote.remote(actor_spec, expected_sha256) for _ in range(workers)]
        try:
            keys = ray.get([a.key.remote() for a in actors])
        except RayActorError as exc:
            for actor in actors:
                ray.kill(actor)
            raise ExecutorError(f"a Ray worker could not load the student: {_cause(exc)}") from None
        if len(set(keys)) != 1:
            raise ExecutorError(f"the Ray workers loaded different students: {sorted(set(keys))}")
        where = "GPU" if gpus else f"{settings.threads} CPU thread(s)"
        log(
            f"ray: {workers} student actor(s) of {where} each on "
            f"{len(ray.nodes())} node(s), batches of {settings.batch_size}"
        )
        return RayScoringPool(actors, keys[0], store, settings, log, owns_cluster=started)
    except BaseException:
        if started:
            ray.shutdown()
        raise


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    for line in reversed(text):  # the actor's own error is the last line of Ray's report
        if "Error" in line:
            return line.strip()
    return text[-1] if text else type(exc).__name__


# ---------------------------------------------------------------- the driver's side


@dataclass
class _Entry:
    """A pair hash queued or in flight, with whoever waits for its score."""

    callbacks: list[Callback]
    urgent: bool
    sent: bool = False


@dataclass
class _Batch:
    pairs: list[Pair]
    attempts: int = 0
    hashes: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.hashes = [p.hash for p in self.pairs]


@dataclass
class PoolStats:
    sent_pairs: int = 0  # pairs sent to actors (each distinct pair once, unless resent)
    from_store: int = 0  # pairs answered by the store's cache
    batches: int = 0  # batches whose scores came back
    resent: int = 0  # batches sent again after their actor died


class RayScoringPool:
    """The actors and the driver thread that feeds them; callbacks run in that thread."""

    def __init__(
        self,
        actors: list[Any],
        key: ScoreKey,
        store: Store | None,
        settings: RaySettings,
        log: Log,
        owns_cluster: bool = False,
    ) -> None:
        self.actors = actors
        self.key = key
        self.store = store
        self.settings = settings
        self.log = log
        self.owns_cluster = owns_cluster
        self.stats = PoolStats()
        self.tokens = 0
        self.busy = [0] * len(actors)
        self.down = [False] * len(actors)  # died, waiting for Ray to restart it
        self.dead = [False] * len(actors)  # failed to come back more than max_restarts times
        self.deaths = [0] * len(actors)  # failed probes in a row
        self.probes: dict[Any, int] = {}
        self.in_flight: dict[Any, tuple[int, _Batch]] = {}
        self.retry: collections.deque[_Batch] = collections.deque()
        self.items: queue.PriorityQueue[tuple[int, int, Pair]] = queue.PriorityQueue()
        self.entries: dict[str, _Entry] = {}
        self.counter = itertools.count()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="srt-ray-driver", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ asking

    def submit(self, pair: Pair, urgent: bool, callback: Callback | None) -> None:
        """Queue `pair`; `callback(score, error)` is called once it is known (or failed)."""
        h = pair.hash
        with self.lock:
            if self.failure is not None:
                if callback is not None:
                    callback(None, self.failure)
                return
            entry = self.entries.get(h)
            if entry is None:
                self.entries[h] = _Entry([callback] if callback else [], urgent)
                self.items.put((URGENT if urgent else PREFETCH, next(self.counter), pair))
            else:
                if callback is not None:
                    entry.callbacks.append(callback)
                if urgent and not entry.urgent and not entry.sent:
                    # Queued behind prefetched work: queue it again, in front.
                    entry.urgent = True
                    self.items.put((URGENT, next(self.counter), pair))
        self.wake.set()

    def score_all(
        self, pairs: Sequence[Pair], progress: Callable[[int, int], None] | None = None
    ) -> list[PairScore]:
        """Every pair's score in input order (blocking); `progress(samples, tokens)` as they come."""
        results: list[PairScore | None] = [None] * len(pairs)
        done = threading.Event()
        state = {"left": len(pairs), "finished": 0}
        errors: list[BaseException] = []

        def callback_for(i: int) -> Callback:
            def callback(score: PairScore | None, error: BaseException | None) -> None:
                if error is not None:
                    errors.append(error)
                    done.set()
                    return
                results[i] = score
                state["finished"] += 1
                if progress is not None:
                    progress(state["finished"], self.tokens)
                if state["finished"] == state["left"]:
                    done.set()

            return callback

        if not pairs:
            return []
        for i, pair in enumerate(pairs):
            self.submit(pair, True, callback_for(i))
        while not done.wait(0.2):
            pass
        if errors:
            raise errors[0]
        return [r for r in results if r is not None]

    # ------------------------------------------------------------ the driver thread

    def _loop(self) -> None:
        try:
            while not self.stopping.is_set():
                self._fill()
                waiting = [*self.in_flight, *self.probes]
                if waiting:
                    ready, _ = ray.wait(waiting, num_returns=1, timeout=POLL_S)
                    for ref in ready:
                        if ref in self.probes:
                            self._probed(ref)
                        else:
                            self._finish(ref)
                else:
                    self.wake.wait(0.1)
                    self.wake.clear()
        except BaseException as exc:  # the pool cannot go on: every waiter learns why
            self._fail_all(exc)

    def _fill(self) -> None:
        while True:
            if all(self.dead):
                raise ExecutorError(
                    f"all {len(self.actors)} Ray student actors are gone (each died more than "
                    f"{self.settings.max_restarts} times in a row)"
                )
            free = [
                i
                for i in range(len(self.actors))
                if not self.dead[i] and not self.down[i] and self.busy[i] < self.settings.in_flight
            ]
            if not free:
                return
            batch = self.retry.popleft() if self.retry else self._take()
            if batch is None:
                return
            i = min(free, key=lambda k: self.busy[k])
            ref = self.actors[i].score.remote(batch.pairs)
            self.busy[i] += 1
            self.in_flight[ref] = (i, batch)
            batch.attempts += 1
            self.stats.sent_pairs += len(batch.pairs)

    def _lost(self, i: int) -> None:
        """Actor `i` died: send it nothing until a probe answers (Ray restarts it meanwhile)."""
        if self.down[i]:
            return
        self.down[i] = True
        self.probes[self.actors[i].key.remote()] = i

    def _probed(self, ref: Any) -> None:
        i = self.probes.pop(ref)
        try:
            ray.get(ref)
        except LOST as exc:
            self.deaths[i] += 1
            if self.deaths[i] > self.settings.max_restarts:
                self.dead[i] = True
                self.log(f"ray: actor {i} is gone ({_cause(exc)})")
                return
            self.probes[self.actors[i].key.remote()] = i
            return
        self.down[i] = False
        self.deaths[i] = 0
        self.log(f"ray: actor {i} is back")

    def _take(self) -> _Batch | None:
        """The next batch of pairs the store does not have (answering those it has)."""
        while True:
            pairs: list[Pair] = []
            with self.lock:
                while len(pairs) < self.settings.batch_size:
                    try:
                        _, _, pair = self.items.get_nowait()
                    except queue.Empty:
                        break
                    entry = self.entries.get(pair.hash)
                    if entry is None or entry.sent:
                        continue  # answered, or already in a batch
                    entry.sent = True
                    pairs.append(pair)
            if not pairs:
                return None
            if self.store is not None:
                known = lookup_scores(self.store, self.key, [p.hash for p in pairs])
                if known:
                    self.stats.from_store += len(known)
                    self._resolve(list(known.items()))
                    pairs = [p for p in pairs if p.hash not in known]
            if pairs:
                return _Batch(pairs)

    def _finish(self, ref: Any) -> None:
        i, batch = self.in_flight.pop(ref)
        self.busy[i] -= 1
        try:
            scores, tokens = ray.get(ref)
        except LOST as exc:
            self._lost(i)
            self.stats.resent += 1
            if batch.attempts >= MAX_ATTEMPTS:
                self._fail(batch, ExecutorError(f"a batch's Ray actor died {batch.attempts} times"))
                return
            self.log(
                f"ray: actor {i} lost a batch of {len(batch.pairs)} ({_cause(exc)}); resending"
            )
            self.retry.appendleft(batch)
            return
        except RayTaskError as exc:
            self._fail(batch, exc.as_instanceof_cause())
            return
        self.deaths[i] = 0
        self.tokens += tokens
        self.stats.batches += 1
        scored = list(zip(batch.hashes, scores, strict=True))
        if self.store is not None:
            store_scores(self.store, self.key, scored)  # before the waiters learn of it
        if self.stats.batches == 1:
            self.log(f"ray: first batch back ({len(scored)} pairs)")
        self._resolve(scored)

    def _resolve(self, scored: list[tuple[str, PairScore]]) -> None:
        calls: list[tuple[Callback, PairScore]] = []
        with self.lock:
            for h, score in scored:
                entry = self.entries.pop(h, None)
                if entry is not None:
                    calls += [(cb, score) for cb in entry.callbacks]
        for cb, score in calls:
            cb(score, None)

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        """The batch's waiters fail (a sample waiting on it fails the run, as locally)."""
        calls: list[Callback] = []
        with self.lock:
            for h in batch.hashes:
                entry = self.entries.pop(h, None)
                if entry is not None:
                    calls += entry.callbacks
        for cb in calls:
            cb(None, error)

    def _fail_all(self, error: BaseException) -> None:
        with self.lock:
            self.failure = error
            entries, self.entries = self.entries, {}
        for entry in entries.values():
            for cb in entry.callbacks:
                cb(None, error)

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        """Stop the driver thread, end the actors, and the cluster if this process started it."""
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=30)
        s = self.stats
        self.log(
            f"ray: {s.sent_pairs} pairs scored on workers in {s.batches} batches, "
            f"{s.from_store} from the store, {s.resent} batches resent"
        )
        for actor in self.actors:
            ray.kill(actor)
        if self.owns_cluster:
            ray.shutdown()


class RayScorer:
    """The engine's `Scorer` over a `RayScoringPool`; futures resolved on the run's loop."""

    def __init__(self, pool: RayScoringPool, loop: Any) -> None:
        self.pool = pool
        self.loop = loop

    @property
    def tokens(self) -> int:
        return self.pool.tokens

    async def score(self, pair: Pair) -> PairScore:
        future = self.loop.create_future()

        def done(score: PairScore | None, error: BaseException | None) -> None:
            self.loop.call_soon_threadsafe(_settle, future, score, error)

        self.pool.submit(pair, True, done)
        result: PairScore = await future
        return result

    def prefetch(self, pairs: Sequence[Pair]) -> None:
        for pair in pairs:
            self.pool.submit(pair, False, None)

    def close(self) -> None:
        self.pool.close()


def _settle(future: Any, score: PairScore | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(score)
