"""Per-host counts and latency of a teacher: live from a teacher pool, or read back from the
teacher_calls rows of a run (`srt status`). One small record both can show."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostStats:
    """What one server did for a teacher.

    `state` is "up", "down" (taken out, being probed) or "" when read from the store; `capacity`
    and `in_flight` are 0 there too. `mean_ms` covers the calls that got a reply.
    """

    host: str
    calls: int
    errors: int
    mean_ms: float | None
    state: str = ""
    capacity: int = 0
    in_flight: int = 0

    def line(self) -> str:
        """One line for a terminal: host, state, calls, errors, mean latency."""
        mean = f"{self.mean_ms / 1000:.2f} s" if self.mean_ms is not None else "-"
        state = f" [{self.state} {self.in_flight}/{self.capacity}]" if self.state else ""
        return f"{self.host}{state}: {self.calls} calls, {self.errors} errors, mean {mean}"
