"""Ask an Ollama server, briefly, what it can serve: reachable? version? which models are pulled,
and for each wanted model its digest, trained context length and capabilities (thinking, tools).

One probe serves the teacher (when it opens), `--teacher auto`, `srt models` and the Models tab.
It reads GET /api/version, GET /api/tags and POST /api/show as Ollama answers them, and degrades
with a warning for the Ollama-compatible servers users also run: a missing /api/show (context and
capabilities unknown), tag entries with `name` but no `model`.

Model names are compared as Ollama compares them: case-insensitive, `x` is `x:latest`, and
`library/x` or `registry.ollama.ai/library/x` are `x`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

PROBE_TIMEOUT = 3.0
_REGISTRY = "registry.ollama.ai"


def unreachable_message(host: str) -> str:
    return (
        f"no Ollama server answers at {host}: start it with `ollama serve` (or open the Ollama "
        "app), or point the teacher at another server with OLLAMA_HOST or `host` in models.toml"
    )


def not_pulled_message(host: str, model: str) -> str:
    return f"the Ollama server at {host} has no model {model!r}: pull it with `ollama pull {model}`"


@dataclass(frozen=True)
class ModelInfo:
    """What the server says about one wanted model; `name` is None when it is not pulled."""

    wanted: str
    name: str | None = None
    digest: str | None = None
    size: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    context_length: int | None = None  # the trained context, from /api/show model_info
    capabilities: tuple[str, ...] | None = None  # None: the server did not say

    @property
    def pulled(self) -> bool:
        return self.name is not None

    def can(self, capability: str) -> bool | None:
        """Whether the model has `capability` (thinking, tools...); None when unknown."""
        return None if self.capabilities is None else capability in self.capabilities


@dataclass
class ServerProbe:
    """The answer of one server; `error` says why it cannot serve (None: it answered)."""

    host: str
    error: str | None = None
    version: str | None = None
    names: tuple[str, ...] = ()
    models: dict[str, ModelInfo] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.error is None


def normalize_name(name: str) -> str:
    """A model name in Ollama's full form, lower case: host/namespace/model:tag."""
    text = name.strip().lower()
    text = text.split("@", 1)[0]  # a digest pin does not change which model is meant
    slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > slash:
        path, tag = text[:colon], text[colon + 1 :]
    else:
        path, tag = text, "latest"
    parts = path.split("/")
    if len(parts) == 1:
        parts = [_REGISTRY, "library", parts[0]]
    elif len(parts) == 2:
        parts = [_REGISTRY, *parts]
    return "/".join(parts) + ":" + (tag or "latest")


def find_model(wanted: str, names: Iterable[str]) -> str | None:
    """The server's name for `wanted` among `names`, compared as Ollama compares names."""
    key = normalize_name(wanted)
    return next((n for n in names if normalize_name(n) == key), None)


async def probe_server(
    host: str,
    models: Sequence[str] = (),
    timeout: float = PROBE_TIMEOUT,
    client: httpx.AsyncClient | None = None,
) -> ServerProbe:
    """Probe the server at `host` (already resolved) for `models`, each request within `timeout`
    seconds (or `client`'s own timeouts when given). Never raises for a server that fails."""
    own = client is None
    http = client or httpx.AsyncClient(base_url=host, timeout=timeout)
    try:
        return await _probe(http, host, models)
    finally:
        if own:
            await http.aclose()


async def _probe(http: httpx.AsyncClient, host: str, models: Sequence[str]) -> ServerProbe:
    result = ServerProbe(host)
    try:
        tags = await http.get(f"{host}/api/tags")
    except (httpx.ConnectError, httpx.ConnectTimeout):
        result.error = unreachable_message(host)
        return result
    except httpx.TimeoutException:
        result.error = f"the Ollama server at {host} did not answer in time"
        return result
    except httpx.HTTPError as exc:
        result.error = f"the server at {host} cannot be asked: {type(exc).__name__}: {exc}"
        return result
    listing = _json(tags)
    entries = listing.get("models") if isinstance(listing, dict) else None
    if tags.status_code != 200 or not isinstance(entries, list):
        result.error = (
            f"the server at {host} does not answer like Ollama (GET /api/tags: HTTP "
            f"{tags.status_code}); is OLLAMA_HOST or `host` pointing at the right server?"
        )
        return result
    by_name: dict[str, dict[str, Any]] = {}
    nameless = False
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("model") or entry.get("name")
        if not entry.get("model"):
            nameless = True
        if isinstance(name, str) and name:
            by_name[name] = entry
    if nameless and by_name:
        result.warnings.append(
            f"the server at {host} lists models without a 'model' field; srt uses 'name'"
        )
    result.names = tuple(by_name)
    version, infos = await asyncio.gather(
        _version(http, host), asyncio.gather(*(_model(http, host, m, by_name) for m in models))
    )
    result.version = version
    for wanted, (info, warning) in zip(models, infos, strict=True):
        result.models[wanted] = info
        if warning and warning not in result.warnings:
            result.warnings.append(warning)
    return result


async def _version(http: httpx.AsyncClient, host: str) -> str | None:
    try:
        reply = await http.get(f"{host}/api/version")
    except httpx.HTTPError:
        return None
    body = _json(reply)
    version = body.get("version") if isinstance(body, dict) else None
    return version if reply.status_code == 200 and isinstance(version, str) else None


async def _model(
    http: httpx.AsyncClient, host: str, wanted: str, by_name: dict[str, dict[str, Any]]
) -> tuple[ModelInfo, str | None]:
    name = find_model(wanted, by_name)
    entry = by_name.get(name or "", {})
    body: Any = None
    try:
        # `name` is what servers before 0.5 read; current ones read `model`.
        shown = await http.post(
            f"{host}/api/show", json={"model": name or wanted, "name": name or wanted}
        )
    except httpx.HTTPError as exc:
        why = type(exc).__name__
    else:
        why = f"HTTP {shown.status_code}"
        if shown.status_code == 200:
            body = _json(shown)
    if not isinstance(body, dict):
        if name is None:
            return ModelInfo(wanted), None
        warning = (
            f"the server at {host} does not answer POST /api/show ({why}): the context length "
            "and capabilities of its models are unknown (num_ctx is not held to the trained "
            "context; thinking is not checked)"
        )
        return _info(wanted, name, entry, None), warning
    if name is None:
        # Not listed, yet shown: a server whose listing is incomplete. Take it at its word.
        name = wanted
    return _info(wanted, name, entry, body), None


def _info(wanted: str, name: str, entry: dict[str, Any], shown: dict[str, Any] | None) -> ModelInfo:
    details = dict(entry.get("details") or {})
    context = None
    capabilities = None
    if shown is not None:
        details.update({k: v for k, v in (shown.get("details") or {}).items() if v})
        info = shown.get("model_info") or shown.get("modelinfo") or {}
        arch = info.get("general.architecture")
        keys = [f"{arch}.context_length"] if arch else []
        keys += [k for k in info if k.endswith(".context_length")]
        context = next((info[k] for k in keys if isinstance(info.get(k), int)), None)
        caps = shown.get("capabilities")
        if isinstance(caps, list):
            capabilities = tuple(str(c) for c in caps)
    digest = entry.get("digest")
    size = entry.get("size")
    return ModelInfo(
        wanted=wanted,
        name=name,
        digest=digest if isinstance(digest, str) else None,
        size=size if isinstance(size, int) else None,
        details=details,
        context_length=context,
        capabilities=capabilities,
    )


def _json(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except ValueError:
        return None
