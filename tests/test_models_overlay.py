"""Your models.toml over the shipped one: an entry of a shipped name changes key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from srt_local.config import ConfigError, load_models


def _user(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(body)
    return path


def test_one_key_changes_one_key(tmp_path: Path) -> None:
    shipped = load_models().teacher("ollama")
    config = load_models(_user(tmp_path, '[teachers.ollama]\nmodel = "qwen3:8b"\n'))
    mine = config.teacher("ollama")
    assert mine.model == "qwen3:8b"
    assert (mine.backend, mine.output, mine.timeout) == (
        shipped.backend,
        shipped.output,
        shipped.timeout,
    )


def test_an_option_changes_that_option_alone(tmp_path: Path) -> None:
    shipped = load_models().teacher("ollama").options
    mine = load_models(_user(tmp_path, "[teachers.ollama]\noptions = { num_ctx = 4096 }\n"))
    options = mine.teacher("ollama").options
    assert options.num_ctx == 4096
    assert (options.temperature, options.num_predict) == (shipped.temperature, shipped.num_predict)


def test_a_path_replaces_the_shipped_package(tmp_path: Path) -> None:
    gguf = tmp_path / "mine.gguf"
    config = load_models(_user(tmp_path, f'[students.gemma3-270m]\npath = "{gguf}"\n'))
    student = config.student("gemma3-270m")
    assert (student.path, student.package) == (gguf, None)
    assert student.template == load_models().student("gemma3-270m").template


def test_another_backend_replaces_the_entry_whole(tmp_path: Path) -> None:
    body = '[teachers.ollama]\nbackend = "openai"\nmodel = "m"\nbase_url = "http://127.0.0.1:8000/v1"\n'
    mine = load_models(_user(tmp_path, body)).teacher("ollama")
    assert (mine.backend, mine.base_url, mine.keep_alive) == (
        "openai",
        "http://127.0.0.1:8000/v1",
        None,
    )


def test_a_typo_in_an_overlay_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'concurency': unknown key"):
        load_models(_user(tmp_path, "[teachers.smollm2-135m-chat]\nconcurency = 2\n"))
    with pytest.raises(ConfigError, match="key 'concurrency': expected an integer"):
        load_models(_user(tmp_path, '[teachers.smollm2-135m-chat]\nconcurrency = "four"\n'))
    with pytest.raises(ConfigError, match=r"-3 is not allowed: 0 \(4\) or a count"):
        load_models(_user(tmp_path, "[teachers.smollm2-135m-chat]\nconcurrency = -3\n"))


def test_hosts_replace_one_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = (
        '[teachers.vllm]\nbackend = "openai"\nmodel = "m"\nbase_url = "http://127.0.0.1:8000/v1"\n'
    )
    # Your models.toml names one server; a later file (--models) gives the teacher two.
    monkeypatch.setattr("srt_local.paths.user_models_toml", lambda: _user(tmp_path, body))
    later = tmp_path / "later.toml"
    later.write_text(
        '[teachers.vllm]\nhosts = ["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"]\n'
    )
    mine = load_models(later).teacher("vllm")
    assert [h.url for h in mine.hosts] == ["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"]
    assert mine.base_url is None
