"""Teachers: instruction and response reflection through Ollama or an embedded llama.cpp model.

base.py holds the data (TeacherCall, ReflectResult; Reflection lives in srt_local.reflection) and the
Teacher interface; chat.py the shared reflect loop; ollama.py and llamacpp.py the backends;
registry.py the backends by name; auto.py `open_teacher`. A new backend is one module and one
registry entry. Importing this package imports neither httpx nor llama.cpp: `open_teacher` and
`probe_ollama` load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from srt_local.teachers.base import (
    OUTCOMES,
    Reflection,
    ReflectResult,
    Teacher,
    TeacherCall,
    TeacherError,
    TeacherServerDown,
)

if TYPE_CHECKING:
    from srt_local.teachers.auto import open_teacher, probe_ollama

__all__ = [
    "OUTCOMES",
    "ReflectResult",
    "Reflection",
    "Teacher",
    "TeacherCall",
    "TeacherError",
    "TeacherServerDown",
    "open_teacher",
    "probe_ollama",
]

_LAZY = {"open_teacher": "srt_local.teachers.auto", "probe_ollama": "srt_local.teachers.auto"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
