"""Where an Ollama server is: the one reading of `host` (models.toml) and $OLLAMA_HOST.

It reads a host the way Ollama's own CLI and official Python client do (learned from Ollama's
envconfig `Host`/`ConnectableHost` and ollama-python's `_parse_host`):
- the scheme is optional (http when absent); the port is optional: 11434 when no scheme is given,
  80 for an explicit `http://`, 443 for `https://`;
- IPv6 addresses are written in brackets, `[::1]` or `[::1]:8080`; a path after the host is kept;
- `0.0.0.0` and `::` are addresses a server binds to, not ones a client can reach everywhere (they
  fail on Windows), so they are replaced by the loopback address, as Ollama's CLI does.

Every part of srt that talks to Ollama (the teacher, `--teacher auto`, `srt models`, the Models
tab) resolves its host here, so they all go where `ollama run` in the next terminal goes.
"""

from __future__ import annotations

import ipaddress
import os

from srt_local.errors import SrtError

DEFAULT_PORT = 11434
DEFAULT_HOST = f"http://127.0.0.1:{DEFAULT_PORT}"
_SCHEME_PORTS = {"http": 80, "https": 443}


class OllamaHostError(SrtError):
    """A host that cannot be read (a bad port, an unknown scheme)."""


def parse_host(value: str | None) -> str:
    """A host as `scheme://host:port[/path]`, read as Ollama reads OLLAMA_HOST.

    Raises OllamaHostError (naming the value) for a port that is not a number in 0-65535 or a
    scheme other than http and https.
    """
    text = (value or "").strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest, port = "http", text, DEFAULT_PORT
    else:
        scheme = scheme.lower()
        if scheme not in _SCHEME_PORTS:
            raise OllamaHostError(f"{value!r}: the scheme must be http or https, not {scheme!r}")
        port = _SCHEME_PORTS[scheme]
    hostport, _, path = rest.partition("/")
    host, explicit = _split_host_port(hostport, value)
    if explicit is not None:
        port = explicit
    host = host or "127.0.0.1"
    if _is_ipv6(host):
        host = f"[{host}]"
    path = path.strip("/")
    return f"{scheme}://{host}:{port}" + (f"/{path}" if path else "")


def connectable(url: str) -> str:
    """`url` with a bind-all address (0.0.0.0, ::) replaced by the matching loopback address."""
    scheme, _, rest = url.partition("://")
    hostport, slash, path = rest.partition("/")
    host, port = _split_host_port(hostport, url)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return url
    if not ip.is_unspecified:
        return url
    loopback = "127.0.0.1" if ip.version == 4 else "[::1]"
    return f"{scheme}://{loopback}" + (f":{port}" if port is not None else "") + slash + path


def resolve_host(configured: str | None) -> str:
    """The server to connect to: `configured` (models.toml `host`), else $OLLAMA_HOST, else
    http://127.0.0.1:11434; read by `parse_host` and made `connectable`."""
    source = configured if configured and configured.strip() else os.environ.get("OLLAMA_HOST")
    try:
        return connectable(parse_host(source))
    except OllamaHostError as exc:
        where = "host" if configured and configured.strip() else "OLLAMA_HOST"
        raise OllamaHostError(f"{where} {exc}") from None


def _split_host_port(hostport: str, value: str | None) -> tuple[str, int | None]:
    """(host without brackets, port or None) of `host`, `host:port`, `[v6]` or `[v6]:port`."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise OllamaHostError(f"{value!r}: an IPv6 address needs its closing ']'")
        host, tail = hostport[1:end], hostport[end + 1 :]
        if not tail:
            return host, None
        if not tail.startswith(":"):
            raise OllamaHostError(f"{value!r}: expected ':port' after ']'")
        return host, _port(tail[1:], value)
    if hostport.count(":") > 1:
        # A bare IPv6 address: Ollama accepts it without brackets (and without a port).
        return hostport, None
    host, sep, port = hostport.partition(":")
    return host, (_port(port, value) if sep else None)


def _port(text: str, value: str | None) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise OllamaHostError(f"{value!r}: the port must be a number from 0 to 65535, not {text!r}")
    return int(text)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False
