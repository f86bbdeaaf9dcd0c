"""Where scoring runs: in this process (`local`, the default) or on Ray actors (`ray`).

Nothing here imports Ray: `srt_local.executors.ray_scoring` is imported only when a command asks
for `--executor ray`, so the local path neither needs nor loads it.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from srt_local.errors import SrtError

if TYPE_CHECKING:
    from srt_local.config import ModelsConfig, StudentSpec
    from srt_local.executors.ray_scoring import RayScoringPool
    from srt_local.run.context import ScorerFactory
    from srt_local.run.protocols import Scorer
    from srt_local.run.repository import RunRow
    from srt_local.store import Store

EXECUTORS = ("local", "ray")
LOOPBACK = "127.0.0.1"
RAY_MISSING = (
    'Ray is not installed: pip install "srt-local[ray]" (on the head node and every worker)'
)


class ExecutorError(SrtError):
    """A cluster that cannot be reached or used, or workers that cannot load the student."""


@dataclass(frozen=True)
class RaySettings:
    """How to reach (or start) a Ray cluster and how many student actors to run on it.

    `address` None starts a cluster inside this process; `node_ip` is the address this node's
    Ray processes bind and announce: loopback unless given (models.toml `[ray] node_ip` or
    `--ray-node-ip`), so a cluster started on a shared machine is reachable from it alone.
    `workers` None means one actor per GPU, else one per `threads` CPUs.
    """

    address: str | None = None
    node_ip: str | None = None
    workers: int | None = None
    threads: int = 1
    batch_size: int = 16
    in_flight: int = 2  # batches queued at each actor: one computing, one ready behind it
    max_restarts: int = 3

    def with_overrides(
        self, address: str | None, node_ip: str | None, workers: int | None
    ) -> RaySettings:
        """These settings with whatever the command line gave put over them."""
        return replace(
            self,
            address=address or self.address,
            node_ip=node_ip or self.node_ip,
            workers=workers or self.workers,
        )


Log = Callable[[str], None]


def require_ray() -> None:
    """An ExecutorError with the install command when Ray is absent."""
    if importlib.util.find_spec("ray") is None:
        raise ExecutorError(RAY_MISSING)


def open_ray_pool(
    settings: RaySettings,
    spec: StudentSpec,
    expected_sha256: str | None,
    store: Store | None,
    log: Log,
) -> RayScoringPool:
    """Connect to (or start) the cluster and load the student on its actors."""
    require_ray()
    from srt_local.executors.ray_scoring import open_pool

    return open_pool(settings, spec, expected_sha256, store, log)


def ray_scorer_factory(
    settings: RaySettings, config: ModelsConfig, store: Store, log: Log
) -> ScorerFactory:
    """A `run_pipeline` scorer factory whose student runs on Ray actors (the driver keeps the store)."""
    require_ray()

    async def make(run: RunRow) -> Scorer:
        from srt_local.executors.ray_scoring import RayScorer
        from srt_local.run.context import student_spec

        spec = student_spec(run, config)
        pool = await asyncio.to_thread(
            open_ray_pool, settings, spec, run.student_sha256, store, log
        )
        return RayScorer(pool, asyncio.get_running_loop())

    return make
