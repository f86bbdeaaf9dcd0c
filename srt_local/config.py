"""Read and validate models.toml: the students and teachers srt-local knows.

The shipped models.toml is read first, then the user's file (same tables, same keys) adds or replaces
entries by name. Every error names the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from srt_local import paths
from srt_local.errors import SrtError
from srt_local.teachers.registry import BACKENDS as REGISTERED

TEMPLATES = ("vicuna", "alpaca", "wizardlm", "none", "chat")
BACKENDS = tuple(REGISTERED)
OUTPUT_MODES = ("markers", "json")
BOS_RULES = ("gguf", "always")
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


class ConfigError(SrtError, ValueError):
    """A models.toml that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class StudentSpec:
    name: str
    path: Path | None = None
    package: str | None = None
    template: str = "vicuna"
    n_ctx: int = 4096
    max_tokens: int = 2048
    n_gpu_layers: int = -1
    n_threads: int = 0
    # "gguf": start texts with BOS only where the GGUF's tokenizer.ggml.add_bos_token says so, as
    # the model's own (HF) tokenizer does; "always": every text starts with BOS (srt-local <= 0.1).
    bos: str = "gguf"


@dataclass(frozen=True)
class TeacherOptions:
    temperature: float = 0.0
    seed: int = 0
    num_ctx: int = 8192
    num_predict: int = 2048
    top_p: float | None = None
    top_k: int | None = None
    repeat_penalty: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class TeacherSpec:
    name: str
    backend: str
    model: str | None = None
    path: Path | None = None
    package: str | None = None
    host: str | None = None
    options: TeacherOptions = field(default_factory=TeacherOptions)
    keep_alive: str | None = None
    timeout: float = 600.0
    concurrency: int = 0
    output: str = "markers"
    max_attempts: int = 3
    n_gpu_layers: int = -1
    n_threads: int = 0
    prompts: str = "srt"  # the prompt set (srt_local/prompts.py)
    # Set by the run's profile, not models.toml: "warmer" re-asks at temperature >= 0.7 with a new
    # seed; "greedy" re-asks with the same options, as the reference does.
    reask: str = "warmer"
    # "fit": cut the original response to fit num_ctx; "reference": the reference's character cut
    # to 2048 tokens of instruction+input+response, then the reply budget shrinks to fit.
    trim: str = "fit"

    @property
    def resolved_host(self) -> str:
        """The Ollama host: the configured one, else $OLLAMA_HOST, else the default."""
        host = self.host or os.environ.get("OLLAMA_HOST") or DEFAULT_OLLAMA_HOST
        if "://" not in host:
            host = "http://" + host
        return host.rstrip("/")


@dataclass(frozen=True)
class Defaults:
    student: str = "gemma3-270m"
    teacher: str = "auto"
    ollama_teacher: str = "ollama"
    embedded_teacher: str = "smollm2-135m-chat"


@dataclass(frozen=True)
class ModelsConfig:
    defaults: Defaults
    students: Mapping[str, StudentSpec]
    teachers: Mapping[str, TeacherSpec]
    files: tuple[Path, ...]

    def student(self, name: str) -> StudentSpec:
        """A named student, or an ad-hoc one for a path ending in .gguf."""
        if name in self.students:
            return self.students[name]
        if name.endswith(".gguf"):
            path = Path(name).expanduser()
            return StudentSpec(name=path.name, path=path)
        known = ", ".join(sorted(self.students)) or "none"
        raise ConfigError(f"unknown student {name!r} (known: {known}; or give a path to a .gguf)")

    def teacher(self, name: str) -> TeacherSpec:
        if name in self.teachers:
            return self.teachers[name]
        known = ", ".join(["auto", *sorted(self.teachers)])
        raise ConfigError(f"unknown teacher {name!r} (known: {known})")


def for_run(config: ModelsConfig, profile: str, prompts: str | None) -> ModelsConfig:
    """The config a run's teacher is opened from: every teacher with the run's prompt set (if
    `--prompts` named one) and, under the `paper` profile, the reference's re-ask (once, greedy)
    and its trimming of long inputs."""

    def adjust(spec: TeacherSpec) -> TeacherSpec:
        changes: dict[str, Any] = {}
        if prompts:
            changes["prompts"] = prompts
        if profile == "paper":
            changes.update(max_attempts=2, reask="greedy", trim="reference")
        return replace(spec, **changes) if changes else spec

    teachers = {name: adjust(spec) for name, spec in config.teachers.items()}
    return replace(config, teachers=teachers)


# ---------------------------------------------------------------- validation helpers


class _Table:
    """A TOML table with strict, error-naming accessors."""

    def __init__(self, data: Mapping[str, Any], file: Path, where: str) -> None:
        self.data = data
        self.file = file
        self.where = where
        self.used: set[str] = set()

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.file}: [{self.where}] key {key!r}: {message}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a count given as `true` is still a mistake.
        if isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {_kind_names(kinds)}, got {value!r}")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.error(key, f"expected {_kind_names(kinds)}, got {value!r}")
        return value

    def check(self, key: str, value: Any, ok: Callable[[Any], bool], rule: str) -> Any:
        if value is not None and not ok(value):
            raise self.error(key, f"{value!r} is not allowed: {rule}")
        return value

    def reject_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                allowed = ", ".join(sorted(self.used))
                raise self.error(key, f"unknown key (allowed: {allowed})")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _source(table: _Table, base: Path) -> tuple[Path | None, str | None]:
    path = table.get("path", str)
    package = table.get("package", str)
    if (path is None) == (package is None):
        raise table.error(
            "path", "give exactly one of `path` (a .gguf file) or `package` (a PyPI package)"
        )
    resolved = None
    if path is not None:
        resolved = Path(path).expanduser()
        if not resolved.is_absolute():
            resolved = base / resolved
    return resolved, package


def _positive(v: Any) -> bool:
    return bool(v > 0)


def _parse_student(name: str, data: Mapping[str, Any], file: Path) -> StudentSpec:
    t = _Table(data, file, f"students.{name}")
    path, package = _source(t, file.parent)
    spec = StudentSpec(
        name=name,
        path=path,
        package=package,
        template=t.check(
            "template",
            t.get("template", str, "vicuna"),
            TEMPLATES.__contains__,
            "one of " + ", ".join(TEMPLATES),
        ),
        n_ctx=t.check("n_ctx", t.get("n_ctx", int, 4096), lambda v: v >= 256, "at least 256"),
        max_tokens=t.check(
            "max_tokens", t.get("max_tokens", int, 2048), lambda v: v >= 16, "at least 16"
        ),
        n_gpu_layers=t.check(
            "n_gpu_layers", t.get("n_gpu_layers", int, -1), lambda v: v >= -1, "-1 (all) or a count"
        ),
        n_threads=t.check(
            "n_threads", t.get("n_threads", int, 0), lambda v: v >= 0, "0 (auto) or a count"
        ),
        bos=t.check("bos", t.get("bos", str, "gguf"), BOS_RULES.__contains__, "gguf or always"),
    )
    t.reject_unknown()
    return spec


def _parse_options(data: Any, file: Path, where: str) -> TeacherOptions:
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: [{where}] key 'options': expected a table, got {data!r}")
    t = _Table(data, file, f"{where}.options")
    options = TeacherOptions(
        temperature=t.check(
            "temperature", t.get("temperature", float, 0.0), lambda v: v >= 0, "at least 0"
        ),
        seed=t.get("seed", int, 0),
        num_ctx=t.check("num_ctx", t.get("num_ctx", int, 8192), lambda v: v >= 256, "at least 256"),
        num_predict=t.check("num_predict", t.get("num_predict", int, 2048), _positive, "above 0"),
        top_p=t.check("top_p", t.get("top_p", float), lambda v: 0 < v <= 1, "in (0, 1]"),
        top_k=t.check("top_k", t.get("top_k", int), _positive, "above 0"),
        repeat_penalty=t.check(
            "repeat_penalty", t.get("repeat_penalty", float), _positive, "above 0"
        ),
    )
    t.reject_unknown()
    return options


def _parse_teacher(name: str, data: Mapping[str, Any], file: Path) -> TeacherSpec:
    where = f"teachers.{name}"
    if name == "auto":
        raise ConfigError(f"{file}: [{where}]: 'auto' is reserved (it picks a teacher for you)")
    t = _Table(data, file, where)
    backend = t.check(
        "backend", t.get("backend", str), BACKENDS.__contains__, "one of " + ", ".join(BACKENDS)
    )
    if backend is None:
        raise t.error("backend", f"missing ({' or '.join(BACKENDS)})")
    model = path = package = None
    if REGISTERED[backend].source == "server":
        model = t.get("model", str)
        if not model:
            raise t.error(
                "model", f"missing: the {backend.capitalize()} model name, e.g. 'llama3.1:8b'"
            )
    else:
        path, package = _source(t, file.parent)
    options_data = t.get("options", dict, {})
    spec = TeacherSpec(
        name=name,
        backend=backend,
        model=model,
        path=path,
        package=package,
        host=t.get("host", str),
        options=_parse_options(options_data, file, where),
        keep_alive=t.get("keep_alive", (str, int)) if "keep_alive" in data else None,
        timeout=t.check("timeout", t.get("timeout", float, 600.0), _positive, "above 0 seconds"),
        concurrency=t.check(
            "concurrency",
            t.get("concurrency", int, 0),
            lambda v: v >= 0,
            "0 (the server's) or a count",
        ),
        output=t.check(
            "output", t.get("output", str, "markers"), OUTPUT_MODES.__contains__, "markers or json"
        ),
        max_attempts=t.check(
            "max_attempts", t.get("max_attempts", int, 3), lambda v: 1 <= v <= 10, "1 to 10"
        ),
        n_gpu_layers=t.check(
            "n_gpu_layers", t.get("n_gpu_layers", int, -1), lambda v: v >= -1, "-1 (all) or a count"
        ),
        n_threads=t.check(
            "n_threads", t.get("n_threads", int, 0), lambda v: v >= 0, "0 (auto) or a count"
        ),
        prompts=t.check(
            "prompts",
            t.get("prompts", str, "srt"),
            lambda v: bool(v.strip()),
            "the name of a prompt set (`srt prompts list`)",
        ),
    )
    if isinstance(spec.keep_alive, int):
        spec = TeacherSpec(**{**spec.__dict__, "keep_alive": f"{spec.keep_alive}s"})
    t.reject_unknown()
    return spec


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc


def shipped_models_toml() -> Path:
    """The models.toml that ships with srt-local (inside the wheel, or at the repository root)."""
    packaged = resources.files("srt_local").joinpath("default_models.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[1] / "models.toml"


def load_models(extra: Path | None = None) -> ModelsConfig:
    """The shipped models.toml, overlaid by the user's file and then by `extra` if given."""
    files = [shipped_models_toml(), paths.user_models_toml()]
    if extra is not None:
        if not extra.is_file():
            raise ConfigError(f"{extra}: no such models file")
        files.append(extra)
    defaults: dict[str, Any] = {}
    students: dict[str, StudentSpec] = {}
    teachers: dict[str, TeacherSpec] = {}
    read: list[Path] = []
    for file in files:
        if not file.is_file():
            continue
        read.append(file)
        data = _read_toml(file)
        top = _Table(data, file, "top level")
        d = top.get("defaults", dict, {})
        dt = _Table(d, file, "defaults")
        for key in ("student", "teacher", "ollama_teacher", "embedded_teacher"):
            value = dt.get(key, str)
            if value is not None:
                defaults[key] = value
        dt.reject_unknown()
        for name, sdata in top.get("students", dict, {}).items():
            if not isinstance(sdata, dict):
                raise ConfigError(f"{file}: [students.{name}]: expected a table")
            students[name] = _parse_student(name, sdata, file)
        for name, tdata in top.get("teachers", dict, {}).items():
            if not isinstance(tdata, dict):
                raise ConfigError(f"{file}: [teachers.{name}]: expected a table")
            teachers[name] = _parse_teacher(name, tdata, file)
        top.reject_unknown()
    config = ModelsConfig(Defaults(**defaults), students, teachers, tuple(read))
    _check_defaults(config)
    return config


def _check_defaults(config: ModelsConfig) -> None:
    where = config.files[-1] if config.files else Path("models.toml")
    d = config.defaults
    if d.student not in config.students and not d.student.endswith(".gguf"):
        raise ConfigError(f"{where}: [defaults] key 'student': no student named {d.student!r}")
    for key in ("ollama_teacher", "embedded_teacher"):
        name = getattr(d, key)
        if name not in config.teachers:
            raise ConfigError(f"{where}: [defaults] key {key!r}: no teacher named {name!r}")
    if d.teacher != "auto" and d.teacher not in config.teachers:
        raise ConfigError(f"{where}: [defaults] key 'teacher': no teacher named {d.teacher!r}")
