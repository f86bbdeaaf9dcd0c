"""Where srt looks for Ollama (host parsing as Ollama does it) and what the probe reports."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from srt_local.config import ConfigError, TeacherSpec, load_models
from srt_local.ollama_host import OllamaHostError, parse_host, resolve_host
from srt_local.ollama_probe import find_model, normalize_name, probe_server
from srt_local.teachers import open_teacher
from srt_local.teachers.ollama import OllamaTeacher
from tests.ollama_server import Compat, OllamaTestServer


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "http://127.0.0.1:11434"),
        (None, "http://127.0.0.1:11434"),
        ("127.0.0.1", "http://127.0.0.1:11434"),
        ("localhost", "http://localhost:11434"),
        ("example.com:56789", "http://example.com:56789"),
        ("example.com:56789/path/", "http://example.com:56789/path"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:8443/ollama", "https://example.com:8443/ollama"),
        ("[::1]", "http://[::1]:11434"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("::1", "http://[::1]:11434"),
        ("https://[2001:db8::1]", "https://[2001:db8::1]:443"),
        ("  10.0.0.5  ", "http://10.0.0.5:11434"),
    ],
)
def test_hosts_read_as_ollama_reads_them(value: str | None, expected: str) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:5000", "http://127.0.0.1:5000"),
        ("[::]", "http://[::1]:11434"),
        ("http://0.0.0.0:8080/x", "http://127.0.0.1:8080/x"),
    ],
)
def test_a_bind_address_is_reached_on_loopback(value: str, expected: str) -> None:
    assert resolve_host(value) == expected


@pytest.mark.parametrize("value", ["127.0.0.1:port", "h:70000", "ftp://h", "[::1"])
def test_a_host_that_cannot_be_read_is_an_error(value: str) -> None:
    with pytest.raises(OllamaHostError, match="host"):
        resolve_host(value)


def test_ollama_host_is_used_when_models_toml_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TeacherSpec(name="t", backend="ollama", model="m")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1")
    assert spec.resolved_host == "http://127.0.0.1:11434"
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:x")
    with pytest.raises(OllamaHostError, match="OLLAMA_HOST"):
        _ = spec.resolved_host
    assert TeacherSpec(name="t", backend="ollama", model="m", host="h").resolved_host == (
        "http://h:11434"
    )


def test_a_bad_host_in_models_toml_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[teachers.x]\nbackend = "ollama"\nmodel = "m"\nhost = "h:99999"\n')
    with pytest.raises(ConfigError, match=r"models\.toml.*teachers\.x.*'host'.*65535"):
        load_models(path)


def test_think_is_checked_in_models_toml(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[teachers.x]\nbackend = "ollama"\nmodel = "m"\nthink = "max2"\n')
    with pytest.raises(ConfigError, match=r"'think'.*low, medium, high"):
        load_models(path)
    path.write_text('[teachers.x]\nbackend = "ollama"\nmodel = "m"\nthink = "low"\n')
    assert load_models(path).teacher("x").think == "low"


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("llama3.1", "llama3.1:latest", True),
        ("Llama3.1:8B", "llama3.1:8b", True),
        ("library/qwen3:8b", "qwen3:8b", True),
        ("registry.ollama.ai/library/qwen3:8b", "qwen3:8b", True),
        ("me/qwen3:8b", "qwen3:8b", False),
        ("qwen3:8b", "qwen3:14b", False),
        ("localhost:5000/x/m:1", "localhost:5000/x/m:1", True),
    ],
)
def test_model_names_compare_as_ollama_compares_them(a: str, b: str, same: bool) -> None:
    assert (normalize_name(a) == normalize_name(b)) is same


async def test_the_probe_reports_context_capabilities_and_digest() -> None:
    with OllamaTestServer(models=("llama3.1:8b", "qwen3:8b")) as srv:
        probe = await probe_server(srv.url, ["qwen3", "qwen3:8b", "llama3.1:8b", "nope:1b"])
    assert probe.reachable and probe.version == "0.12.6" and probe.warnings == []
    assert set(probe.names) == {"llama3.1:8b", "qwen3:8b"}
    qwen = probe.models["qwen3:8b"]
    assert qwen.pulled and qwen.context_length == 40960
    assert qwen.can("thinking") is True and qwen.can("tools") is True
    assert qwen.digest and len(qwen.digest) == 64
    assert probe.models["llama3.1:8b"].can("thinking") is False
    assert not probe.models["qwen3"].pulled  # qwen3 means qwen3:latest, which is not there
    assert not probe.models["nope:1b"].pulled
    assert find_model("QWEN3:8B", probe.names) == "qwen3:8b"


async def test_the_probe_of_a_closed_port_is_quick_and_says_what_to_do() -> None:
    probe = await probe_server("http://127.0.0.1:9", ["m"], timeout=1.0)
    assert not probe.reachable and probe.error and "ollama serve" in probe.error


async def test_the_probe_degrades_for_a_compatible_server() -> None:
    with OllamaTestServer(compat=Compat(show=False, tags_model_field=False)) as srv:
        probe = await probe_server(srv.url, [srv.model])
    info = probe.models[srv.model]
    assert info.pulled and info.context_length is None and info.capabilities is None
    assert info.can("thinking") is None
    assert any("/api/show" in w for w in probe.warnings)
    assert any("'name'" in w for w in probe.warnings)


def _server_on_11434() -> OllamaTestServer:
    try:
        return OllamaTestServer(port=11434)
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            pytest.skip("port 11434 is taken (an Ollama runs here?)")
        raise


async def test_ollama_host_without_a_port_finds_the_server_on_11434(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[teachers.ollama]\nbackend = "ollama"\nmodel = "llama3.1:8b"\ntimeout = 5\n'
        "options = { num_ctx = 4096, num_predict = 256 }\n"
    )
    with _server_on_11434() as srv:
        for host in ("127.0.0.1", "localhost", "0.0.0.0"):
            monkeypatch.setenv("OLLAMA_HOST", host)
            lines: list[str] = []
            teacher = await open_teacher("auto", load_models(path), log=lines.append)
            await teacher.aclose()
            assert isinstance(teacher, OllamaTeacher), lines
            assert ":11434" in lines[0] and "embedded" not in lines[0]
    assert any(r.path == "/api/tags" for r in srv.requests)


def test_srt_models_shows_what_the_server_says(tmp_path: Path) -> None:
    with OllamaTestServer(models=("llama3.1:8b", "qwen3:8b")) as srv:
        path = tmp_path / "models.toml"
        path.write_text(
            f'[teachers.ollama]\nbackend = "ollama"\nmodel = "qwen3:8b"\nhost = "{srv.url}"\n'
            'think = "low"\n\n'
            f'[teachers.absent]\nbackend = "ollama"\nmodel = "mistral:7b"\nhost = "{srv.url}"\n\n'
            '[teachers.gone]\nbackend = "ollama"\nmodel = "m"\nhost = "127.0.0.1:9"\n'
        )
        out = subprocess.run(
            [sys.executable, "-m", "srt_local.cli", "models", "--models-file", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "500"},
        )
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "pulled" in text and "40,960" in text and "caps=tools,thinking" in text
    assert "think=low" in text and "digest=" in text
    assert "not pulled" in text and "ollama pull mistral:7b" in text
    assert "unreachable" in text and "http://127.0.0.1:9" in text
    assert f"Ollama at {srv.url}: version 0.12.6, 2 models pulled" in text
