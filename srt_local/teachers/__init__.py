"""Teachers: instruction and response reflection through Ollama or an embedded llama.cpp model.

base.py holds the data (Reflection, TeacherCall, ReflectResult) and the Teacher interface; chat.py
the shared reflect loop; ollama.py and llamacpp.py the backends; auto.py `open_teacher`.
A new backend (vLLM, an OpenAI-compatible server) is one new ChatTeacher subclass.
"""

from srt_local.teachers.auto import open_teacher, probe_ollama
from srt_local.teachers.base import (
    OUTCOMES,
    Reflection,
    ReflectResult,
    Teacher,
    TeacherCall,
    TeacherError,
    TeacherServerDown,
)

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
