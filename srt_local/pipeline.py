"""The selective pipeline's public names; the engine itself lives in `srt_local.run`."""

from srt_local.run.engine import (
    RunOptions,
    RunSummary,
    cancel_run,
    find_dataset,
    prepare_run,
    run_pipeline,
)
from srt_local.run.progress import RunProgress, StageProgress
from srt_local.run.repository import PipelineError
from srt_local.run.vocabulary import RESUMABLE, STAGES

__all__ = [
    "RESUMABLE",
    "STAGES",
    "PipelineError",
    "RunOptions",
    "RunProgress",
    "RunSummary",
    "StageProgress",
    "cancel_run",
    "find_dataset",
    "prepare_run",
    "run_pipeline",
]
