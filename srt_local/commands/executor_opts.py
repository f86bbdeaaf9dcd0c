"""`--executor local|ray` and its Ray options, shared by `srt run` and `srt score`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from srt_local.commands.common import UserError
from srt_local.config import ModelsConfig
from srt_local.executors import EXECUTORS, RaySettings, require_ray


def executor_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --executor, --ray-address, --ray-node-ip and --workers to a command."""
    for option in reversed(
        [
            click.option(
                "--executor",
                type=click.Choice(EXECUTORS),
                default="local",
                show_default=True,
                help="Where the student scores: in this process, or on Ray actors "
                '(pip install "srt-local[ray]").',
            ),
            click.option(
                "--ray-address",
                default=None,
                metavar="HOST:PORT",
                help="A running Ray cluster's head (default: models.toml [ray] address, else a "
                "cluster started inside srt).",
            ),
            click.option(
                "--ray-node-ip",
                default=None,
                metavar="IP",
                help="The address this node's Ray processes bind (default: models.toml [ray] "
                "node_ip, else 127.0.0.1: reachable from this machine only).",
            ),
            click.option(
                "--workers",
                type=click.IntRange(min=1),
                default=None,
                help="Ray student actors (default: one per GPU, else one per [ray] threads CPUs).",
            ),
        ]
    ):
        command = option(command)
    return command


def ray_settings(
    config: ModelsConfig,
    executor: str,
    address: str | None,
    node_ip: str | None,
    workers: int | None,
) -> RaySettings | None:
    """The Ray settings for `--executor ray` (models.toml under the options), None for local."""
    if executor == "local":
        given = [
            name
            for name, value in (
                ("--ray-address", address),
                ("--ray-node-ip", node_ip),
                ("--workers", workers),
            )
            if value is not None
        ]
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise UserError(f"{', '.join(given)} {verb} --executor ray")
        return None
    require_ray()
    return config.ray.with_overrides(address, node_ip, workers)
