"""A teacher pool: one teacher spread over several servers of the same model (`hosts` in
models.toml).

Each host runs up to its own concurrency; a request goes to the host with the most free room.
A host whose request fails in a way that says the host is the problem (refused connection,
timeout, 5xx, a cut stream, a reply that is not the protocol's) is taken out and probed again with
exponential back-off; the request it lost is recorded as it happened (one teacher_calls row, with
that host) and sent again at once to another host as a new attempt. So every request is recorded
exactly once, with the host that served it, and no reflection is lost while any host is up. When
every host has been down for `PoolPolicy.all_down_timeout`, the reflection fails with a
TeacherError that carries the calls made, like a single server that went away.

Hosts must serve the same model: a host whose model digest (and so teacher key) differs from the
first one's is left out, since its replies would belong to another teacher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from srt_local.config import HostSpec, TeacherSpec
from srt_local.host_stats import HostStats
from srt_local.prompts import Prompt
from srt_local.teachers.base import TeacherError
from srt_local.teachers.chat import ChatTeacher, Generation, RetryPolicy

# Error kinds that blame the host, not the request.
HOST_FAILURES = frozenset(
    {
        "unreachable",
        "timeout",
        "stream_cut",
        "server_error",
        "http_error",
        "bad_response",
        "model_not_found",
    }
)

# Opens the teacher of one host with the given concurrency; raises TeacherError when it cannot.
Opener = Callable[[HostSpec, int], Awaitable[ChatTeacher]]


@dataclass(frozen=True)
class PoolPolicy:
    """Back-off of the probes of a host that was taken out: `probe_delay` * 2**n seconds, at most
    `max_probe_delay`; each probe may take `probe_timeout`. A reflection waits up to
    `all_down_timeout` for some host to come back."""

    probe_delay: float = 1.0
    max_probe_delay: float = 60.0
    probe_timeout: float = 10.0
    all_down_timeout: float = 600.0


class _Host:
    def __init__(self, spec: HostSpec, capacity: int) -> None:
        self.url = spec.url
        self.capacity = capacity
        self.member: ChatTeacher | None = None
        self.up = False
        self.in_flight = 0
        self.calls = 0
        self.errors = 0
        self.reply_ms = 0.0
        self.replies = 0
        self.failures = 0  # consecutive, for the back-off
        self.probe: asyncio.Task[None] | None = None
        self.why = ""

    def stats(self) -> HostStats:
        return HostStats(
            host=self.url,
            calls=self.calls,
            errors=self.errors,
            mean_ms=self.reply_ms / self.replies if self.replies else None,
            state="up" if self.up else "down",
            capacity=self.capacity,
            in_flight=self.in_flight,
        )


class TeacherPool(ChatTeacher):
    """One teacher over several hosts; reflects like any ChatTeacher (same key as one host's)."""

    def __init__(
        self,
        spec: TeacherSpec,
        hosts: list[_Host],
        reference: ChatTeacher,
        opener: Opener,
        concurrency: int,
        retry: RetryPolicy | None,
        policy: PoolPolicy,
        log: Callable[[str], None],
    ) -> None:
        super().__init__(
            spec,
            reference.model,
            reference.model_digest,
            None,
            concurrency,
            retry or reference.retry,
        )
        # The members decide what shapes the replies: backend, their default options, the key.
        self.backend = reference.backend
        self.base_options = dict(reference.base_options)
        self.schema_chars = reference.schema_chars
        self.key = reference.key
        self._retired: list[ChatTeacher] = []
        self.hosts = hosts
        self.policy = policy
        self._opener = opener
        self._log = log
        self._changed = asyncio.Condition()
        self._in_flight = 0
        self._closed = False

    @classmethod
    async def open(
        cls,
        spec: TeacherSpec,
        opener: Opener,
        default_capacity: int,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        policy: PoolPolicy | None = None,
        log: Callable[[str], None] | None = None,
    ) -> TeacherPool:
        """Open every host at once; hosts that fail now are probed later. TeacherError when none
        opens. `concurrency` caps the calls in flight over all hosts (default: their sum)."""
        say = log or (lambda _line: None)
        policy = policy or PoolPolicy()
        hosts = [
            _Host(h, h.concurrency or spec.concurrency or default_capacity) for h in spec.hosts
        ]
        opened = await asyncio.gather(
            *(_open_host(opener, h, policy.probe_timeout) for h in hosts), return_exceptions=True
        )
        unexpected = next(
            (r for r in opened if isinstance(r, BaseException) and not isinstance(r, TeacherError)),
            None,
        )
        if unexpected is not None:
            for result in opened:
                if isinstance(result, ChatTeacher):
                    await result.aclose()
            raise unexpected
        reference: ChatTeacher | None = None
        for host, result in zip(hosts, opened, strict=True):
            if isinstance(result, ChatTeacher):
                if reference is None:
                    reference = result
                if result.key == reference.key:
                    host.member, host.up = result, True
                    continue
                await result.aclose()
                host.why = f"it serves another build of {spec.model} ({result.key})"
            else:
                host.why = str(result)
        if reference is None:
            reasons = "; ".join(f"{h.url}: {h.why}" for h in hosts)
            raise TeacherError(f"no host of teacher {spec.name!r} can serve: {reasons}")
        total = sum(h.capacity for h in hosts)
        pool = cls(spec, hosts, reference, opener, concurrency or total, retry, policy, say)
        for host in hosts:
            if not host.up:
                say(f"teacher {spec.name}: host {host.url} left out for now: {host.why}")
                pool._start_probe(host)
        return pool

    # ------------------------------------------------------------ the ChatTeacher part

    async def _send(self, prompt: Prompt, options: dict[str, Any]) -> Generation:
        host = await self._acquire()
        member = host.member
        assert member is not None
        began = time.perf_counter()
        try:
            gen = await member._send(prompt, options)
        finally:
            await self._release(host)
        gen.host = host.url
        host.calls += 1
        if gen.error_kind is None:
            host.replies += 1
            host.reply_ms += (time.perf_counter() - began) * 1000
            host.failures = 0
            return gen
        host.errors += 1
        if gen.error_kind in HOST_FAILURES:
            await self._take_out(host, f"{gen.error_kind}: {gen.error_message}")
            # The host failed, not the request: send it again elsewhere, at once.
            gen.rerouted = True
            gen.retryable = True
            gen.fatal = None
        return gen

    async def aclose(self) -> None:
        self._closed = True
        for host in self.hosts:
            if host.probe is not None:
                host.probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await host.probe
        for host in self.hosts:
            if host.member is not None:
                self._retired.append(host.member)
                host.member = None
        for member in self._retired:
            await member.aclose()
        self._retired.clear()

    def stats(self) -> list[HostStats]:
        """Per-host counts and latency, now."""
        return [h.stats() for h in self.hosts]

    # ------------------------------------------------------------ slots and health

    def _pick(self) -> _Host | None:
        if self._in_flight >= self.concurrency:
            return None
        free = [h for h in self.hosts if h.up and h.in_flight < h.capacity]
        if not free:
            return None
        # The most free room relative to size; ties go to the host listed first.
        return min(free, key=lambda h: h.in_flight / h.capacity)

    async def _acquire(self) -> _Host:
        async with self._changed:
            since: float | None = None
            while True:
                host = self._pick()
                if host is not None:
                    host.in_flight += 1
                    self._in_flight += 1
                    return host
                if any(h.up for h in self.hosts):
                    since = None
                    await self._changed.wait()
                    continue
                now = time.monotonic()
                since = since if since is not None else now
                left = self.policy.all_down_timeout - (now - since)
                if left <= 0:
                    reasons = "; ".join(f"{h.url}: {h.why}" for h in self.hosts)
                    raise TeacherError(
                        f"no host of teacher {self.name!r} has answered for "
                        f"{self.policy.all_down_timeout:g} s ({reasons})"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)

    async def _release(self, host: _Host) -> None:
        async with self._changed:
            host.in_flight -= 1
            self._in_flight -= 1
            self._changed.notify_all()

    async def _take_out(self, host: _Host, why: str) -> None:
        async with self._changed:
            if not host.up:
                return  # another request already took it out
            host.up = False
            host.why = why
            host.failures += 1
            self._changed.notify_all()
        self._log(f"teacher {self.name}: host {host.url} taken out ({why}); probing it")
        self._start_probe(host)

    def _start_probe(self, host: _Host) -> None:
        if not self._closed and (host.probe is None or host.probe.done()):
            host.probe = asyncio.create_task(self._probe(host), name=f"probe {host.url}")

    async def _probe(self, host: _Host) -> None:
        """Reopen the host after a back-off until it serves this teacher again."""
        tries = 0
        while not self._closed:
            delay = self.policy.probe_delay * 2 ** (tries + max(0, host.failures - 1))
            await asyncio.sleep(min(self.policy.max_probe_delay, delay))
            tries += 1
            try:
                member = await _open_host(self._opener, host, self.policy.probe_timeout)
            except TeacherError as exc:
                host.why = str(exc)
                continue
            if member.key != self.key:
                host.why = f"it serves another build of {self.model} ({member.key})"
                await member.aclose()
                continue
            # A request may still be finishing on the old client: it is closed with the pool.
            if host.member is not None:
                self._retired.append(host.member)
            host.member = member
            async with self._changed:
                host.up = True
                self._changed.notify_all()
            self._log(f"teacher {self.name}: host {host.url} is back")
            return


async def _open_host(opener: Opener, host: _Host, timeout: float) -> ChatTeacher:
    try:
        return await asyncio.wait_for(
            opener(HostSpec(host.url, host.capacity), host.capacity), timeout
        )
    except TimeoutError:
        raise TeacherError(f"{host.url} did not answer within {timeout:g} s") from None


def member_spec(spec: TeacherSpec, host: HostSpec) -> TeacherSpec:
    """The spec of one host's teacher: the pool's, aimed at that one server."""
    return spec.member(host)
