"""The selective pipeline: reflect, score and decide every sample of a dataset, resumably.

Teacher calls run on an asyncio loop with bounded concurrency; the student scores in its own thread
from a priority queue, so scoring overlaps with the teacher's writing. Every unit of work (a teacher
reply with its version, a batch of scores, a decision) is one transaction: a crash or Ctrl-C loses at
most the work in flight, and the same run again continues where it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from srt_local.config import ModelsConfig
from srt_local.decision import Decision, VersionScore, choose_instruction, decide
from srt_local.errors import SrtError
from srt_local.model_files import file_sha256, resolve_gguf
from srt_local.pairs import Pair
from srt_local.run_owner import claim
from srt_local.store import Store
from srt_local.teachers.base import TeacherError

if TYPE_CHECKING:
    from srt_local.student import PairScore, Student
    from srt_local.teachers.base import ReflectResult, Teacher, TeacherCall

STAGES = ("instruction reflection", "instruction choice", "response reflection", "decision")
RESUMABLE = ("running", "paused", "failed", "incomplete", "done")


class PipelineError(SrtError, RuntimeError):
    """A run that cannot start or go on (unknown dataset, dead teacher...)."""


@dataclass(frozen=True)
class RunOptions:
    dataset: str
    teacher: str = "auto"
    student: str | None = None
    limit: int | None = None
    concurrency: int | None = None
    emit_unreflected: bool = False
    full_grid: bool = False


@dataclass
class StageProgress:
    name: str
    total: int
    done: int = 0
    failed: dict[str, int] = field(default_factory=dict)


@dataclass
class RunProgress:
    run_id: int
    stages: list[StageProgress]
    tokens_per_s: float
    calls_per_s: float
    eta_s: float | None


@dataclass
class RunSummary:
    run_id: int
    status: str
    kept: int
    rejected: int
    by_branch: dict[str, int]
    failures: dict[str, int]
    elapsed_s: float
    teacher_calls: int = 0
    teacher: str = ""


@dataclass(frozen=True)
class Version:
    kind: str
    pair: Pair


# ---------------------------------------------------------------- runs


def find_dataset(store: Store, name: str) -> int:
    rows = store.query("SELECT dataset_id FROM datasets WHERE name = ?", [name])
    if not rows:
        known = [r[0] for r in store.query("SELECT name FROM datasets ORDER BY name")]
        hint = ", ".join(known) if known else "none yet: `srt import FILE` first"
        raise PipelineError(f"no dataset named {name!r} in {store.path} (datasets: {hint})")
    return int(rows[0][0])


def prepare_run(store: Store, options: RunOptions, config: ModelsConfig) -> int:
    """The run for these settings: the latest one not cancelled (to resume), else a new one."""
    dataset_id = find_dataset(store, options.dataset)
    spec = config.student(options.student or config.defaults.student)
    sha = file_sha256(resolve_gguf(spec.path, spec.package))
    if options.teacher != "auto":
        config.teacher(options.teacher)  # fail early on an unknown name
    rows = store.query(
        "SELECT run_id FROM runs WHERE dataset_id = ? AND teacher_name = ? AND student_sha256 = ? "
        "AND template = ? AND max_tokens = ? AND sample_limit IS NOT DISTINCT FROM ? "
        "AND emit_unreflected = ? AND json_extract(config, '$.full_grid')::BOOLEAN = ? "
        "AND status IN ? ORDER BY run_id DESC LIMIT 1",
        [
            dataset_id,
            options.teacher,
            sha,
            spec.template,
            spec.max_tokens,
            options.limit,
            options.emit_unreflected,
            options.full_grid,
            list(RESUMABLE),
        ],
    )
    if rows:
        return int(rows[0][0])
    run_config = {**asdict(options), "student_spec": _spec_dict(spec)}
    with store.transaction() as con:
        row = con.execute(
            "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, student_sha256, "
            "template, max_tokens, sample_limit, emit_unreflected, config, status) "
            "VALUES (?, ?, '', ?, ?, ?, ?, ?, ?, ?, 'paused') RETURNING run_id",
            [
                dataset_id,
                options.teacher,
                spec.name,
                sha,
                spec.template,
                spec.max_tokens,
                options.limit,
                options.emit_unreflected,
                json.dumps(run_config),
            ],
        ).fetchone()
    assert row is not None
    return int(row[0])


def cancel_run(store: Store, run_id: int) -> None:
    """Mark a run cancelled: it is kept for inspection but never resumed."""
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = 'cancelled', updated_at = current_timestamp, "
            "finished_at = current_timestamp WHERE run_id = ?",
            [run_id],
        )


def _spec_dict(spec: Any) -> dict[str, Any]:
    return {
        k: (str(v) if v is not None and not isinstance(v, int | float | str | bool) else v)
        for k, v in asdict(spec).items()
    }


def _set_status(store: Store, run_id: int, status: str, error: str | None = None) -> None:
    finished = status in ("done", "incomplete", "failed", "cancelled")
    with store.transaction() as con:
        con.execute(
            "UPDATE runs SET status = ?, error = ?, updated_at = current_timestamp, "
            "finished_at = CASE WHEN ? THEN current_timestamp ELSE NULL END WHERE run_id = ?",
            [status, error, finished, run_id],
        )


# ---------------------------------------------------------------- the student's thread


class _ScoreQueue:
    """Scores pairs in one thread, in batches, highest priority first; answers through futures."""

    URGENT, PREFETCH = 0, 1

    def __init__(
        self, student: Student, store: Store, loop: asyncio.AbstractEventLoop, batch_size: int = 16
    ) -> None:
        self.student = student
        self.store = store
        self.loop = loop
        self.batch_size = batch_size
        self.items: queue.PriorityQueue[tuple[int, int, Pair, asyncio.Future[PairScore]]] = (
            queue.PriorityQueue()
        )
        self.counter = itertools.count()
        self.stopping = threading.Event()
        self.tokens = 0
        self.error: BaseException | None = None
        # Imported here, not in the thread, so that a broken install fails the run loudly.
        from srt_local.scoring import score_cached

        self.score_cached = score_cached
        self.thread = threading.Thread(target=self._loop, name="srt-student", daemon=True)
        self.thread.start()

    def submit(self, pair: Pair, priority: int) -> asyncio.Future[PairScore]:
        future: asyncio.Future[PairScore] = self.loop.create_future()
        self.items.put((priority, next(self.counter), pair, future))
        return future

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
            live = [item for item in batch if not item[3].cancelled()]
            if not live:
                continue
            base = self.tokens

            def count(_samples: int, tokens: int, base: int = base) -> None:
                self.tokens = base + tokens

            try:
                scores = self.score_cached(
                    self.student, [item[2] for item in live], self.store, progress=count
                )
            except BaseException as exc:
                self.error = exc
                for item in live:
                    self.loop.call_soon_threadsafe(_set_exception, item[3], exc)
                continue
            for item, score in zip(live, scores, strict=True):
                self.loop.call_soon_threadsafe(_set_result, item[3], score)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


# ---------------------------------------------------------------- one run


class _Run:
    """The state of one execution of a run: what is stored, what is in flight, the counters."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        config: ModelsConfig,
        progress: Callable[[RunProgress], None] | None,
        log: Callable[[str], None],
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.config = config
        self.progress_cb = progress
        self.log = log
        row = store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not row:
            raise PipelineError(f"no run {run_id} in {store.path}")
        self.run = row[0]
        self.options = json.loads(self.run["config"])
        self.emit_unreflected = bool(self.run["emit_unreflected"])
        self.full_grid = bool(self.options.get("full_grid", False))
        self.teacher: Teacher | None = None
        self.teacher_key = ""
        self.teacher_lock = asyncio.Lock()
        self.calls = 0
        self.started = time.monotonic()
        self.stages = {name: StageProgress(name, 0) for name in STAGES}
        self.last_emit = 0.0

    # ------------------------------------------------------------ loading state

    def samples(self) -> list[tuple[int, Pair]]:
        sql = (
            "SELECT sample_id, instruction, input, output FROM samples WHERE dataset_id = ? "
            "ORDER BY position"
        )
        params: list[Any] = [self.run["dataset_id"]]
        if self.run["sample_limit"] is not None:
            sql += " LIMIT ?"
            params.append(self.run["sample_limit"])
        return [(int(r[0]), Pair(r[1], r[2], r[3])) for r in self.store.query(sql, params)]

    def load_versions(self, key: str, sample_ids: Sequence[int]) -> None:
        self.versions: dict[tuple[int, str], Version] = {}
        self.failures: dict[tuple[int, str], str] = {}
        ids = list(sample_ids)
        for sid, kind, ins, inp, out in self.store.query(
            "SELECT sample_id, kind, instruction, input, output FROM versions "
            "WHERE teacher_key = ? AND sample_id IN (SELECT unnest(?))",
            [key, ids],
        ):
            self.versions[(sid, kind)] = Version(kind, Pair(ins, inp, out))
        for sid, kind, outcome in self.store.query(
            "SELECT sample_id, kind, outcome FROM reflection_failures "
            "WHERE teacher_key = ? AND sample_id IN (SELECT unnest(?))",
            [key, ids],
        ):
            self.failures[(sid, kind)] = outcome
        self.decided = {
            r[0]
            for r in self.store.query(
                "SELECT sample_id FROM decisions WHERE run_id = ?", [self.run_id]
            )
        }

    # ------------------------------------------------------------ progress

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress_cb is None or (not force and now - self.last_emit < 0.25):
            return
        self.last_emit = now
        self.progress_cb(self.snapshot())

    def snapshot(self) -> RunProgress:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        final = self.stages["decision"]
        decided_now = final.done - self.decided_at_start
        remaining = final.total - final.done - sum(final.failed.values())
        eta = remaining * elapsed / decided_now if decided_now > 0 else None
        tokens = self.scorer.tokens if hasattr(self, "scorer") else 0
        return RunProgress(
            run_id=self.run_id,
            stages=[
                StageProgress(s.name, s.total, s.done, dict(s.failed)) for s in self.stages.values()
            ],
            tokens_per_s=tokens / elapsed,
            calls_per_s=self.calls / elapsed,
            eta_s=eta,
        )

    def fail(self, stage: str, kind: str) -> None:
        failed = self.stages[stage].failed
        failed[kind] = failed.get(kind, 0) + 1

    # ------------------------------------------------------------ teacher

    async def open_teacher(self) -> Teacher:
        async with self.teacher_lock:
            if self.teacher is None:
                from srt_local.teachers import open_teacher

                name = self.options.get("resolved_teacher") or self.run["teacher_name"]
                self.teacher = await open_teacher(
                    name, self.config, log=self.log, concurrency=self.options.get("concurrency")
                )
            return self.teacher

    async def version(self, sid: int, kind: str, base: Version) -> Version | str:
        """The stored version, or a new reflection of `base`; a string says why there is none."""
        if (sid, kind) in self.versions:
            return self.versions[(sid, kind)]
        if (sid, kind) in self.failures:
            return f"reflection {self.failures[(sid, kind)]}"
        teacher = await self.open_teacher()
        stage = "instruction" if kind == "Q" else "response"
        try:
            result = await teacher.reflect(stage, base.pair)
        except TeacherError as exc:
            # The run stops; the requests made before the fatal error are still kept.
            self.record_calls(sid, base.kind, exc.calls)
            raise
        self.calls += len(result.calls)
        return self.store_reflection(sid, kind, base, stage, result)

    def record_calls(self, sid: int, source_kind: str, calls: Sequence[TeacherCall]) -> None:
        from srt_local.teacher_log import record_call

        if calls:
            with self.store.transaction() as con:
                for call in calls:
                    record_call(con, call, sid, source_kind, self.teacher_key)

    def store_reflection(
        self, sid: int, kind: str, base: Version, stage: str, result: ReflectResult
    ) -> Version | str:
        from srt_local.teacher_log import record_call

        refl = result.reflection
        made: Version | None = None
        if refl is not None:
            if stage == "instruction":
                assert refl.instruction is not None and refl.output is not None
                made = Version(kind, Pair(refl.instruction, refl.input or "", refl.output))
            else:
                assert refl.output is not None
                made = Version(kind, Pair(base.pair.instruction, base.pair.input, refl.output))
        transient = made is None and result.outcome == "error"
        with self.store.transaction() as con:
            call_id = None
            for call in result.calls:
                call_id = record_call(con, call, sid, base.kind, self.teacher_key)
            if made is not None:
                con.execute(
                    "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, "
                    "output, pair_hash, critique, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [
                        sid,
                        self.teacher_key,
                        kind,
                        made.pair.instruction,
                        made.pair.input,
                        made.pair.output,
                        made.pair.hash,
                        refl.critique if refl else None,
                        call_id,
                    ],
                )
            elif not transient:
                # A reply that never parsed within the budget is final; transport errors are retried
                # by the next run instead.
                con.execute(
                    "INSERT INTO reflection_failures (sample_id, teacher_key, kind, outcome, "
                    "last_call_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [sid, self.teacher_key, kind, result.outcome, call_id],
                )
        if made is not None:
            self.versions[(sid, kind)] = made
            return made
        if transient:
            raise _TeacherUnavailable(result)
        self.failures[(sid, kind)] = result.outcome
        return f"reflection {result.outcome}"

    # ------------------------------------------------------------ scoring

    async def score(self, version: Version | str, priority: int) -> VersionScore:
        if isinstance(version, str):
            return VersionScore(problem=version)
        result = await self.scorer.submit(version.pair, priority)
        if result.status != "ok":
            return VersionScore(problem=f"score {result.status}")
        return VersionScore(result.ifd_ppl, result.rifd_ppl)

    # ------------------------------------------------------------ one sample

    async def process(self, sid: int, pair: Pair) -> None:
        ori = Version("ori", pair)
        q = await self.version(sid, "Q", ori)
        self.stages["instruction reflection"].done += 1
        if isinstance(q, str):
            self.fail("instruction reflection", q)
        self.emit()
        s_ori, s_q = await asyncio.gather(
            self.score(ori, _ScoreQueue.URGENT), self.score(q, _ScoreQueue.URGENT)
        )
        choice = choose_instruction(s_ori, s_q)
        self.stages["instruction choice"].done += 1
        self.emit()
        base = ori if choice.base == "ori" or isinstance(q, str) else q
        kinds = {"ori": "A", "Q": "QA"}
        reflected = await self.version(sid, kinds[base.kind], base)
        if self.full_grid and isinstance(q, Version):
            other = q if base is ori else ori
            await self.version(sid, kinds[other.kind], other)
        self.stages["response reflection"].done += 1
        if isinstance(reflected, str):
            self.fail("response reflection", reflected)
        self.emit()
        s_reflected = await self.score(reflected, _ScoreQueue.URGENT)
        decision = decide(s_ori, s_q, choice, s_reflected, self.emit_unreflected)
        self.store_decision(sid, decision)
        self.stages["decision"].done += 1
        self.emit()

    def store_decision(self, sid: int, d: Decision) -> None:
        with self.store.transaction() as con:
            con.execute(
                "INSERT INTO decisions (run_id, sample_id, branch, final_kind, ifd_ori, ifd_q, "
                "rifd_base, rifd_reflected, ifd_final, rifd_final, ifd_margin, rifd_margin, passes, "
                "emitted, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                [
                    self.run_id,
                    sid,
                    d.branch,
                    d.final_kind,
                    d.ifd_ori,
                    d.ifd_q,
                    d.rifd_base,
                    d.rifd_reflected,
                    d.ifd_final,
                    d.rifd_final,
                    d.ifd_margin,
                    d.rifd_margin,
                    d.passes,
                    d.emitted,
                    d.reason,
                ],
            )
            con.execute(
                "UPDATE runs SET updated_at = current_timestamp WHERE run_id = ?", [self.run_id]
            )

    # ------------------------------------------------------------ the whole run

    async def execute(self, stop: threading.Event | None) -> RunSummary:
        samples = self.samples()
        for stage in self.stages.values():
            stage.total = len(samples)
        self.store_originals()
        await self.resolve_teacher_key()
        self.load_versions(self.teacher_key, [sid for sid, _ in samples])
        todo = [(sid, pair) for sid, pair in samples if sid not in self.decided]
        self.decided_at_start = len(samples) - len(todo)
        for stage in self.stages.values():
            stage.done = self.decided_at_start
        self.log(
            f"run {self.run_id}: {len(samples)} samples, {len(todo)} to decide, "
            f"teacher key {self.teacher_key}"
        )
        if not todo:
            return self.summary("done")

        from srt_local.student import Student

        spec = (
            self.config.student(self.run["student_name"])
            if (self.run["student_name"] in self.config.students)
            else self._adhoc_student()
        )
        student = await asyncio.to_thread(Student.load, spec)
        if student.sha256 != self.run["student_sha256"]:
            raise PipelineError(
                f"run {self.run_id} was made with a student file of sha256 "
                f"{self.run['student_sha256'][:12]}; {spec.name} is now "
                f"{student.sha256[:12]}: start a new run"
            )
        self.scorer = _ScoreQueue(student, self.store, asyncio.get_running_loop())
        # The originals need no teacher: let the student start on them at once.
        for _, pair in todo:
            self.scorer.submit(pair, _ScoreQueue.PREFETCH)
        try:
            status = await self.work(todo, stop)
        finally:
            self.scorer.stop()
            student.close()
            if self.teacher is not None:
                await self.teacher.aclose()
        return self.summary(status)

    def store_originals(self) -> None:
        """The ori versions are the samples themselves, kept beside the reflections for SQL."""
        sql = (
            "INSERT INTO versions (sample_id, teacher_key, kind, instruction, input, output, "
            "pair_hash) SELECT sample_id, '', 'ori', instruction, input, output, pair_hash "
            "FROM samples WHERE dataset_id = ? ON CONFLICT DO NOTHING"
        )
        with self.store.transaction() as con:
            con.execute(sql, [self.run["dataset_id"]])

    def _adhoc_student(self) -> Any:
        stored = self.options["student_spec"]
        return self.config.student(stored["path"] or stored["name"])

    async def resolve_teacher_key(self) -> None:
        """Find the teacher's key, opening it only when the run has none stored yet."""
        if self.run["teacher_key"]:
            self.teacher_key = self.run["teacher_key"]
            return
        teacher = await self.open_teacher()
        self.teacher_key = teacher.key
        self.options["resolved_teacher"] = teacher.name
        with self.store.transaction() as con:
            con.execute(
                "UPDATE runs SET teacher_key = ?, config = ? WHERE run_id = ?",
                [teacher.key, json.dumps(self.options), self.run_id],
            )

    async def work(self, todo: list[tuple[int, Pair]], stop: threading.Event | None) -> str:
        pending: asyncio.Queue[tuple[int, Pair]] = asyncio.Queue()
        for item in todo:
            pending.put_nowait(item)
        teacher = self.teacher
        width = self.options.get("concurrency") or (teacher.concurrency if teacher else 2)
        # Twice the teacher's width keeps the student busy while replies are awaited.
        n_workers = max(2, 2 * int(width))
        abandoned: Counter[str] = Counter()

        async def worker() -> None:
            while not pending.empty():
                sid, pair = pending.get_nowait()
                try:
                    await self.process(sid, pair)
                except _TeacherUnavailable as exc:
                    abandoned[exc.result.outcome] += 1
                    self.fail("decision", f"teacher {exc.error_kind}")
                    self.emit()

        async def watch_stop() -> None:
            while stop is not None and not stop.is_set():
                await asyncio.sleep(0.1)

        workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
        stopper = asyncio.create_task(watch_stop()) if stop is not None else None
        everything = asyncio.gather(*workers)
        try:
            if stopper is None:
                await everything
            else:
                racers: list[asyncio.Future[Any]] = [everything, stopper]
                await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
                if stop is not None and stop.is_set():
                    everything.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await everything
                    return "paused"
                await everything
        finally:
            if stopper is not None:
                stopper.cancel()
            for task in workers:
                task.cancel()
            self.emit(force=True)
        if self.scorer.error is not None:
            raise self.scorer.error
        return "incomplete" if abandoned else "done"

    def summary(self, status: str) -> RunSummary:
        rows = self.store.query(
            "SELECT branch, emitted OR coalesce(override = 'accept', false), "
            "count(*) FROM decisions WHERE run_id = ? GROUP BY ALL",
            [self.run_id],
        )
        by_branch: Counter[str] = Counter()
        kept = rejected = 0
        for branch, emitted, n in rows:
            by_branch[branch] += n
            if emitted:
                kept += n
            else:
                rejected += n
        failures: Counter[str] = Counter()
        for stage in self.stages.values():
            failures.update(stage.failed)
        return RunSummary(
            self.run_id,
            status,
            kept,
            rejected,
            dict(by_branch),
            dict(failures),
            time.monotonic() - self.started,
            self.calls,
            self.teacher.name
            if self.teacher
            else str(self.options.get("resolved_teacher", self.run["teacher_name"])),
        )


class _TeacherUnavailable(Exception):
    """Every attempt hit a transport error: the sample waits for the next run."""

    def __init__(self, result: ReflectResult) -> None:
        super().__init__(result.outcome)
        self.result = result
        last = result.calls[-1] if result.calls else None
        self.error_kind = last.error_kind if last and last.error_kind else "error"


def run_pipeline(
    store: Store,
    run_id: int,
    config: ModelsConfig,
    progress: Callable[[RunProgress], None] | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Execute (or resume) a run to its end, or until `stop` is set; blocking."""
    run = _Run(store, run_id, config, progress, log or (lambda _msg: None))
    _set_status(store, run_id, "running")
    claim(store, run_id)  # i9: the owner's PID and host, so a killed run shows as interrupted
    try:
        summary = asyncio.run(run.execute(stop))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _set_status(store, run_id, "paused")
        raise
    except Exception as exc:
        _set_status(store, run_id, "failed", str(exc))
        raise
    _set_status(store, run_id, summary.status)
    return summary
