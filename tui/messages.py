"""Messages that widgets and panes post up to the app. The app owns the state they ask to change
(which run is current) and pushes it down; nothing below the app writes the app's state."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message


@dataclass
class RunChosen(Message):
    """The user chose a run, or a run was started: it becomes the run Browse, Distributions and
    Export show."""

    run_id: int
