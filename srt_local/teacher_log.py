"""Store teacher calls: one teacher_calls row per request, with prompt, raw reply and outcome."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from srt_local.teachers.base import TeacherCall

_COLUMNS = (
    "sample_id",
    "stage",
    "source_kind",
    "teacher_key",
    "attempt",
    "teacher_name",
    "backend",
    "model",
    "model_digest",
    "host",
    "options",
    "prompt_version",
    "output_mode",
    "messages",
    "raw_reply",
    "outcome",
    "parsed",
    "prompt_tokens",
    "prompt_eval_count",
    "prompt_truncated",
    "eval_count",
    "total_duration_ms",
    "load_duration_ms",
    "prompt_eval_duration_ms",
    "eval_duration_ms",
    "error_kind",
    "error_message",
    "started_at",
    "finished_at",
    "thinking",
    "thinking_tokens",
)
_INSERT = (
    f"INSERT INTO teacher_calls ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) RETURNING call_id"
)


def record_call(
    con: Any, call: TeacherCall, sample_id: int | None, source_kind: str, teacher_key: str
) -> int:
    """Insert one teacher_calls row with `con` (inside the caller's transaction); its call_id.

    `source_kind` names the version that was reflected (ori or Q); timestamps are stored in UTC.
    """
    parsed = call.reflection.as_dict() if call.reflection is not None else None
    values = (
        sample_id,
        call.stage,
        source_kind,
        teacher_key,
        call.attempt,
        call.teacher_name,
        call.backend,
        call.model,
        call.model_digest,
        call.host,
        json.dumps(call.options),
        call.prompt_version,
        call.output_mode,
        json.dumps(call.messages, ensure_ascii=False),
        call.raw_reply,
        call.outcome,
        json.dumps(parsed, ensure_ascii=False) if parsed is not None else None,
        call.prompt_tokens,
        call.prompt_eval_count,
        call.prompt_truncated,
        call.eval_count,
        call.total_duration_ms,
        call.load_duration_ms,
        call.prompt_eval_duration_ms,
        call.eval_duration_ms,
        call.error_kind,
        call.error_message,
        _utc(call.started_at),
        _utc(call.finished_at),
        call.thinking,
        call.thinking_tokens,
    )
    row = con.execute(_INSERT, values).fetchone()
    return int(row[0])


def _utc(moment: datetime) -> datetime:
    """A naive UTC datetime for a TIMESTAMP column (an aware one would be shifted to local time)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
