"""Read and validate models.toml: the students and teachers srt-local knows.

The shipped models.toml is read first, then the user's file (same tables, same keys) adds entries
and changes those of a name already read key by key (`_overlay`). Every error names the file and the
key (an inherited key's error names the later file).
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from srt_local import paths
from srt_local.errors import SrtError
from srt_local.executors import RaySettings
from srt_local.ollama_host import DEFAULT_HOST, OllamaHostError, parse_host, resolve_host
from srt_local.teachers.registry import BACKENDS as REGISTERED

TEMPLATES = ("vicuna", "alpaca", "wizardlm", "none", "chat")
BACKENDS = tuple(REGISTERED)
# Backends that talk to servers, so may name several of them (`hosts`, a teacher pool).
SERVER_BACKENDS = tuple(name for name, b in REGISTERED.items() if b.source == "server")
OUTPUT_MODES = ("markers", "json")
# How an OpenAI-compatible server is asked for schema-constrained JSON: OpenAI's own `json_schema`
# (OpenAI, vLLM, SGLang, llama.cpp's llama-server), or `json_object` with a `schema` beside it
# (llama-cpp-python's server, which refuses json_schema).
RESPONSE_FORMATS = ("json_schema", "json_object")
DEFAULT_OLLAMA_HOST = DEFAULT_HOST
THINK_LEVELS = ("low", "medium", "high")
BOS_RULES = ("gguf", "always")


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
    # How the scorer drives llama.cpp; 0 / "auto" pick from the backend (logprobs.EngineSettings).
    scoring_path: str = "auto"
    n_batch: int = 0
    n_ubatch: int = 0
    n_seq_max: int = 0
    rows_per_decode: int = 0
    kv_align: int = 0
    fixed_shape: str = "auto"
    # "gguf": start texts with BOS only where the GGUF's tokenizer.ggml.add_bos_token says so, as
    # the model's own (HF) tokenizer does; "always": every text starts with BOS (srt-local <= 0.1).
    bos: str = "gguf"


SCORING_PATHS = ("auto", "host", "device")
FIXED_SHAPE = ("auto", "on", "off")


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
class HostSpec:
    """One server of a teacher pool: its URL and how many requests it runs at once (0: the
    teacher's `concurrency`, or the backend's default)."""

    url: str
    concurrency: int = 0


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
    # Ollama: the longest wait for the next piece of a reply (waiting for srt's own turn is not
    # counted). Embedded: the whole reply.
    timeout: float = 600.0
    connect_timeout: float = 10.0
    # Ollama: the longest wait from sending a request to the first piece of its reply (loading a
    # big model counts here); `timeout` then bounds each wait between pieces.
    first_token_timeout: float = 300.0
    concurrency: int = 0
    # Ollama teachers: thinking off (False), on (True) or at a level ("low", "medium", "high").
    think: bool | str = False
    # Ollama teachers: how far srt may raise num_ctx for a prompt that needs more.
    max_num_ctx: int = 32768
    output: str = "markers"
    max_attempts: int = 3
    n_gpu_layers: int = -1
    n_threads: int = 0
    hosts: tuple[HostSpec, ...] = ()
    base_url: str | None = None
    api_key_env: str | None = None
    stream: bool = True
    response_format: str = "json_schema"
    prompts: str = "srt"  # the prompt set (srt_local/prompts.py)
    # Set by the run's profile, not models.toml: "warmer" re-asks at temperature >= 0.7 with a new
    # seed; "greedy" re-asks with the same options, as the reference does.
    reask: str = "warmer"
    # "fit": cut the original response to fit num_ctx; "reference": the reference's character cut
    # to 2048 tokens of instruction+input+response, then the reply budget shrinks to fit.
    trim: str = "fit"

    @property
    def resolved_host(self) -> str:
        """The Ollama host: the configured one, else $OLLAMA_HOST, else the default, read as
        Ollama reads it (srt_local.ollama_host); OllamaHostError for one that cannot be read."""
        return resolve_host(self.host)

    def member(self, host: HostSpec) -> TeacherSpec:
        """This pool's spec aimed at one of its servers."""
        if self.backend == "openai":
            return dataclasses.replace(self, base_url=host.url, hosts=())
        return dataclasses.replace(self, host=host.url, hosts=())


@dataclass(frozen=True)
class Defaults:
    student: str = "gemma3-270m"
    teacher: str = "auto"
    ollama_teacher: str = "ollama"
    embedded_teacher: str = "smollm2-135m-chat"


@dataclass(frozen=True)
class Limits:
    """Size limits that keep one hostile record or reply from costing the whole job."""

    # A field over this many characters rejects its record at import (the scorer would truncate
    # it to the student's max_tokens anyway, after paying for it).
    import_field_chars: int = 200_000
    # A teacher reply over this many characters is a failed call of that sample only.
    reply_chars: int = 100_000


@dataclass(frozen=True)
class ModelsConfig:
    defaults: Defaults
    students: Mapping[str, StudentSpec]
    teachers: Mapping[str, TeacherSpec]
    files: tuple[Path, ...]
    limits: Limits = field(default_factory=Limits)
    ray: RaySettings = field(default_factory=RaySettings)

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
        if isinstance(value, float) and not math.isfinite(value):
            # TOML allows inf and nan; no setting of ours means anything with them.
            raise self.error(key, f"{value!r} is not allowed: give a finite number")
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
        list: "a list",
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
        scoring_path=t.check(
            "scoring_path",
            t.get("scoring_path", str, "auto"),
            SCORING_PATHS.__contains__,
            "one of " + ", ".join(SCORING_PATHS),
        ),
        n_batch=_count(t, "n_batch", 16),
        n_ubatch=_count(t, "n_ubatch", 16),
        n_seq_max=_count(t, "n_seq_max", 1),
        rows_per_decode=_count(t, "rows_per_decode", 16),
        kv_align=_count(t, "kv_align", 1),
        fixed_shape=t.check(
            "fixed_shape",
            t.get("fixed_shape", str, "auto"),
            FIXED_SHAPE.__contains__,
            "one of " + ", ".join(FIXED_SHAPE),
        ),
        bos=t.check("bos", t.get("bos", str, "gguf"), BOS_RULES.__contains__, "gguf or always"),
    )
    t.reject_unknown()
    return spec


def _count(t: _Table, key: str, least: int) -> int:
    """A size that is 0 (chosen from the backend) or at least `least`."""
    value: int = t.check(
        key, t.get(key, int, 0), lambda v: v == 0 or v >= least, f"0 (auto) or at least {least}"
    )
    return value


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
        raise t.error("backend", "missing (" + ", ".join(BACKENDS) + ")")
    _only_for(t, backend)
    model = path = package = None
    if backend in SERVER_BACKENDS:
        model = t.get("model", str)
        if not model:
            example = "'llama3.1:8b'" if backend == "ollama" else "the name the server lists"
            raise t.error("model", f"missing: the model to ask for, e.g. {example}")
    else:
        path, package = _source(t, file.parent)
    options_data = t.get("options", dict, {})
    host = _host(t)
    base_url = t.get("base_url", str)
    if base_url is not None:
        base_url = _url(t, "base_url", base_url, backend)
    hosts = _parse_hosts(t, backend)
    if hosts and (host is not None or base_url is not None):
        key = "host" if host is not None else "base_url"
        raise t.error(key, "give either one server here or several in `hosts`, not both")
    if backend == "openai" and base_url is None and not hosts:
        raise t.error("base_url", "missing: the server's API root, e.g. 'http://127.0.0.1:8000/v1'")
    api_key_env = t.check(
        "api_key_env",
        t.get("api_key_env", str),
        lambda v: re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) is not None,
        "the name of an environment variable that holds the API key",
    )
    spec = TeacherSpec(
        name=name,
        backend=backend,
        model=model,
        path=path,
        package=package,
        host=host,
        options=_parse_options(options_data, file, where),
        keep_alive=t.get("keep_alive", (str, int)) if "keep_alive" in data else None,
        timeout=t.check("timeout", t.get("timeout", float, 600.0), _positive, "above 0 seconds"),
        connect_timeout=t.check(
            "connect_timeout", t.get("connect_timeout", float, 10.0), _positive, "above 0 seconds"
        ),
        first_token_timeout=t.check(
            "first_token_timeout",
            t.get("first_token_timeout", float, 300.0),
            _positive,
            "above 0 seconds",
        ),
        concurrency=t.check(
            "concurrency",
            t.get("concurrency", int, 0),
            lambda v: v >= 0,
            "0 (OLLAMA_NUM_PARALLEL if set, else 1) or a count"
            if backend == "ollama"
            else "0 (4) or a count",
        ),
        think=_think(t, backend),
        max_num_ctx=t.check(
            "max_num_ctx", t.get("max_num_ctx", int, 32768), lambda v: v >= 256, "at least 256"
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
        hosts=hosts,
        base_url=base_url,
        api_key_env=api_key_env,
        stream=t.get("stream", bool, True),
        response_format=t.check(
            "response_format",
            t.get("response_format", str, "json_schema"),
            RESPONSE_FORMATS.__contains__,
            "one of " + ", ".join(RESPONSE_FORMATS),
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


def _parse_ray(data: Mapping[str, Any], file: Path, base: RaySettings) -> RaySettings:
    """`[ray]`: where `--executor ray` finds its cluster; later files override single keys."""
    t = _Table(data, file, "ray")
    count = (lambda v: v >= 1, "at least 1")
    settings = RaySettings(
        address=t.get("address", str, base.address),
        node_ip=t.get("node_ip", str, base.node_ip),
        workers=t.check("workers", t.get("workers", int, base.workers), *count),
        threads=t.check("threads", t.get("threads", int, base.threads), *count),
        batch_size=t.check("batch_size", t.get("batch_size", int, base.batch_size), *count),
        in_flight=t.check("in_flight", t.get("in_flight", int, base.in_flight), *count),
        max_restarts=t.check(
            "max_restarts",
            t.get("max_restarts", int, base.max_restarts),
            lambda v: v >= 0,
            "0 or more",
        ),
    )
    t.reject_unknown()
    return settings


def _host(t: _Table) -> str | None:
    host = t.get("host", str)
    if host is not None:
        try:
            parse_host(host)
        except OllamaHostError as exc:
            raise t.error("host", str(exc)) from None
    return host


def _think(t: _Table, backend: str) -> bool | str:
    think = t.get("think", (bool, str), False)
    if think is not False and backend != "ollama":
        raise t.error("think", "only Ollama teachers take it (an embedded model never thinks)")
    if isinstance(think, str) and think not in THINK_LEVELS:
        raise t.error(
            "think", f"{think!r} is not allowed: true, false, or one of low, medium, high"
        )
    return think


def _parse_limits(data: Mapping[str, Any], file: Path) -> dict[str, int]:
    """The keys of a [limits] table that this file sets (a later file overrides them one by one)."""
    t = _Table(data, file, "limits")
    found: dict[str, int] = {}
    for key in ("import_field_chars", "reply_chars"):
        value = t.check(key, t.get(key, int), lambda v: v >= 1000, "at least 1000 characters")
        if value is not None:
            found[key] = value
    t.reject_unknown()
    return found


# Keys that only some backends understand; anywhere else they are mistakes worth naming.
_BACKEND_KEYS = {
    "host": ("ollama", "llamacpp"),  # llamacpp: accepted and unused, as before
    "hosts": SERVER_BACKENDS,
    "base_url": ("openai",),
    "api_key_env": ("openai",),
    "stream": ("openai",),
    "response_format": ("openai",),
}


def _only_for(t: _Table, backend: str) -> None:
    for key, backends in _BACKEND_KEYS.items():
        if key in t.data and backend not in backends:
            raise t.error(key, f"only for backend {' or '.join(backends)} (this one is {backend})")


def _url(t: _Table, key: str, value: str, backend: str) -> str:
    """A server URL with its scheme (http:// when left out) and without a trailing slash."""
    url = value.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise t.error(key, f"{value!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        example = "'gpu1:11434'" if backend == "ollama" else "'http://gpu1:8000/v1'"
        raise t.error(key, f"{value!r} is not a server URL (e.g. {example})")
    return url.rstrip("/")


def _parse_hosts(t: _Table, backend: str) -> tuple[HostSpec, ...]:
    """`hosts`: a list whose items are a URL (served at the teacher's `concurrency`) or a table
    {url = "...", concurrency = N}."""
    raw = t.get("hosts", list)
    if raw is None:
        return ()
    if not raw:
        raise t.error("hosts", "an empty list: name at least one server, or leave `hosts` out")
    hosts: list[HostSpec] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        key = f"hosts[{i}]"
        if isinstance(item, str):
            host = HostSpec(_url(t, key, item, backend))
        elif isinstance(item, dict):
            h = _Table(item, t.file, f"{t.where}.{key}")
            url = h.get("url", str)
            if url is None:
                raise h.error("url", "missing: the server's URL")
            host = HostSpec(
                _url(h, "url", url, backend),
                h.check(
                    "concurrency",
                    h.get("concurrency", int, 0),
                    lambda v: v >= 0,
                    "0 (the teacher's) or a count",
                ),
            )
            h.reject_unknown()
        else:
            raise t.error(
                key, f"expected a URL or a table {{url = ..., concurrency = N}}, got {item!r}"
            )
        if host.url in seen:
            raise t.error(key, f"{host.url} is listed twice")
        seen.add(host.url)
        hosts.append(host)
    return tuple(hosts)


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{file}: line {line}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}); "
            "TOML files are UTF-8: save it as UTF-8"
        ) from None
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
    limits: dict[str, int] = {}
    students: dict[str, StudentSpec] = {}
    teachers: dict[str, TeacherSpec] = {}
    ray = RaySettings()
    read: list[Path] = []
    # The tables as read so far, per name: a later file changes an entry key by key.
    raw: dict[str, dict[str, dict[str, Any]]] = {"students": {}, "teachers": {}}
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
        limits.update(_parse_limits(top.get("limits", dict, {}), file))
        for name, sdata in top.get("students", dict, {}).items():
            if not isinstance(sdata, dict):
                raise ConfigError(f"{file}: [students.{name}]: expected a table")
            sdata = raw["students"][name] = _overlay(raw["students"].get(name), sdata)
            students[name] = _parse_student(name, sdata, file)
        for name, tdata in top.get("teachers", dict, {}).items():
            if not isinstance(tdata, dict):
                raise ConfigError(f"{file}: [teachers.{name}]: expected a table")
            tdata = raw["teachers"][name] = _overlay(raw["teachers"].get(name), tdata)
            teachers[name] = _parse_teacher(name, tdata, file)
        ray = _parse_ray(top.get("ray", dict, {}), file, ray)
        top.reject_unknown()
    config = ModelsConfig(
        Defaults(**defaults), students, teachers, tuple(read), Limits(**limits), ray
    )
    _check_defaults(config)
    return config


# Keys that name the same thing two ways: giving one in a later file drops the other.
_ALTERNATIVES = (("path", "package"), ("host", "hosts"), ("base_url", "hosts"))


def _overlay(earlier: dict[str, Any] | None, later: dict[str, Any]) -> dict[str, Any]:
    """An entry of a later models.toml over the same name's entry of an earlier one: key by key
    (and `options` option by option), so `[teachers.ollama] model = "qwen3:8b"` changes the model
    alone. A later entry with another `backend` replaces the earlier one whole."""
    if earlier is None or later.get("backend", earlier.get("backend")) != earlier.get("backend"):
        return later
    merged = dict(earlier)
    for pair in _ALTERNATIVES:
        for key in pair:
            if key in later:
                for other in pair:
                    if other != key:
                        merged.pop(other, None)
    merged.update(later)
    if isinstance(earlier.get("options"), dict) and isinstance(later.get("options"), dict):
        merged["options"] = {**earlier["options"], **later["options"]}
    return merged


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
