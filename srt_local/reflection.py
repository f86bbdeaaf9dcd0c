"""A teacher's reply once parsed: shared by the parser and the teachers, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reflection:
    """The parsed content of a reply.

    Instruction stage: a new, self-contained instruction (input "") and its answer.
    Response stage: instruction None (unchanged), the pair's own input, and the better answer.
    """

    critique: str | None
    instruction: str | None
    input: str
    output: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "critique": self.critique,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
        }
