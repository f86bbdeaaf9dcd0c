"""The unit of data: an instruction pair, and the hash that names its texts everywhere."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    """An instruction (with optional input) and its response."""

    instruction: str
    input: str
    output: str

    @property
    def hash(self) -> str:
        return pair_hash(self.instruction, self.input, self.output)


def pair_hash(instruction: str, input: str, output: str) -> str:
    """A stable key for the three texts (JSON keeps the field boundaries unambiguous)."""
    blob = json.dumps([instruction, input, output], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
