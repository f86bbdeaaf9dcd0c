"""A teacher pool over several Ollama-protocol servers (tests/ollama_server.py), one of which
dies mid-run: every reflection completes, every request is recorded once, with its host."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from srt_local.config import ConfigError, HostSpec, TeacherOptions, TeacherSpec, load_models
from srt_local.pairs import Pair
from srt_local.teachers import TeacherError, open_teacher
from srt_local.teachers.chat import ChatTeacher, RetryPolicy
from srt_local.teachers.ollama import OllamaTeacher
from srt_local.teachers.pool import PoolPolicy, TeacherPool, member_spec
from tests.ollama_server import Error, OllamaTestServer

FAST_RETRY = RetryPolicy(transport_retries=2, base_delay=0.01, max_delay=0.05)
FAST_PROBES = PoolPolicy(probe_delay=0.05, max_probe_delay=0.2, probe_timeout=2.0)
PAIRS = [Pair(f"Give {i} tips for staying healthy.", "", f"Tip {i}.") for i in range(30)]


@pytest.fixture
def servers() -> Iterator[list[OllamaTestServer]]:
    started = [OllamaTestServer(latency=0.1, parallel=2).start() for _ in range(3)]
    yield started
    for server in started:
        server.stop()


def pool_spec(urls: list[str], concurrency: int = 2) -> TeacherSpec:
    return TeacherSpec(
        name="pool",
        backend="ollama",
        model="llama3.1:8b",
        hosts=tuple(HostSpec(u, concurrency) for u in urls),
        options=TeacherOptions(num_ctx=4096, num_predict=256),
        timeout=5.0,
    )


async def open_pool(spec: TeacherSpec, policy: PoolPolicy = FAST_PROBES, **kw: Any) -> TeacherPool:
    async def opener(host: HostSpec, n: int) -> ChatTeacher:
        return await OllamaTeacher.open(member_spec(spec, host), concurrency=n, retry=FAST_RETRY)

    return await TeacherPool.open(spec, opener, 2, retry=FAST_RETRY, policy=policy, **kw)


def _check_sent(
    sent: Counter[str | None], servers: list[OllamaTestServer], dying: OllamaTestServer
) -> None:
    """Every request a living server answered is one call with that host. The dying server may
    have been sent up to its capacity (2) of requests that it never read: written to a kept-alive
    connection while it shut down, they failed (recorded once, with it) but never reached it."""
    for server in servers:
        got = len(server.chat_requests)
        if server is dying:
            assert got <= sent[server.url] <= got + 2, (server.url, sent, got)
        else:
            assert sent[server.url] == got, (server.url, sent, got)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- sharing the work


async def test_requests_fill_the_free_slots_of_every_host(
    servers: list[OllamaTestServer],
) -> None:
    pool = await open_pool(pool_spec([s.url for s in servers]))
    try:
        assert pool.concurrency == 6
        results = await asyncio.gather(*(pool.reflect("instruction", p) for p in PAIRS[:18]))
    finally:
        await pool.aclose()
    assert [r.outcome for r in results] == ["ok"] * 18
    by_host = Counter(c.host for r in results for c in r.calls)
    for server in servers:
        assert server.peak_in_flight == 2  # full, never beyond its concurrency
        assert by_host[server.url] == len(server.chat_requests) > 0
    # The pool is one teacher: the same key as one of its hosts alone.
    single = await OllamaTeacher.open(member_spec(pool.spec, pool.spec.hosts[0]))
    assert pool.key == single.key and pool.model_digest == single.model_digest
    await single.aclose()


async def test_a_host_that_dies_mid_run_loses_nothing_and_records_nothing_twice(
    servers: list[OllamaTestServer],
) -> None:
    logged: list[str] = []
    pool = await open_pool(pool_spec([s.url for s in servers]), log=logged.append)
    dying = servers[1]
    try:
        tasks = [asyncio.create_task(pool.reflect("response", p)) for p in PAIRS]
        while len(dying.chat_requests) < 3:
            await asyncio.sleep(0.01)
        dying.stop()  # in-flight streams are cut, later connections refused
        results = await asyncio.gather(*tasks)
        stats = {s.host: s for s in pool.stats()}
    finally:
        await pool.aclose()
    assert [r.outcome for r in results] == ["ok"] * len(PAIRS)
    calls = [c for r in results for c in r.calls]
    for result in results:
        # One reply per reflection, the last attempt; the attempts are numbered 1..n.
        assert [c.outcome for c in result.calls].count("ok") == 1
        assert result.calls[-1].outcome == "ok"
        assert [c.attempt for c in result.calls] == list(range(1, len(result.calls) + 1))
    lost = [c for c in calls if c.error_kind is not None]
    assert lost, "the death must land while requests are in flight"
    assert {c.host for c in lost} == {dying.url}
    assert {c.error_kind for c in lost} <= {"stream_cut", "unreachable", "http_error", "timeout"}
    # One TeacherCall per request sent, with the server it went to as its host.
    reached = Counter(c.host for c in calls if c.error_kind != "unreachable")
    _check_sent(reached, servers, dying)
    # Replies after the death came from the living hosts.
    assert all(c.host != dying.url for r in results for c in r.calls[1:] if c.outcome == "ok")
    assert stats[dying.url].state == "down" and stats[servers[0].url].state == "up"
    assert stats[dying.url].calls == sum(1 for c in calls if c.host == dying.url)
    assert any("taken out" in line and dying.url in line for line in logged)


async def test_a_failing_host_is_probed_and_serves_again(servers: list[OllamaTestServer]) -> None:
    server = servers[0]
    server.script(Error(500, "model runner crashed"))
    logged: list[str] = []
    pool = await open_pool(pool_spec([server.url]), log=logged.append)
    try:
        result = await pool.reflect("instruction", PAIRS[0])
    finally:
        await pool.aclose()
    assert [(c.error_kind, c.host) for c in result.calls] == [
        ("server_error", server.url),
        (None, server.url),
    ]
    assert result.outcome == "ok"
    assert any("is back" in line for line in logged)
    # The probe reopened the host: tags and show asked again before the second chat.
    paths = [r.path for r in server.requests]
    assert paths.count("/api/tags") == 2


async def test_every_host_down_fails_with_the_calls_made(servers: list[OllamaTestServer]) -> None:
    policy = PoolPolicy(probe_delay=0.05, max_probe_delay=0.1, all_down_timeout=0.5)
    pool = await open_pool(pool_spec([s.url for s in servers[:2]]), policy)
    for server in servers[:2]:
        server.stop()
    try:
        with pytest.raises(TeacherError, match="no host of teacher 'pool' has answered") as info:
            await pool.reflect("instruction", PAIRS[0])
    finally:
        await pool.aclose()
    # Each host was tried once; both requests are kept for the store.
    assert sorted(c.host or "" for c in info.value.calls) == sorted(s.url for s in servers[:2])
    assert {c.error_kind for c in info.value.calls} == {"unreachable"}


async def test_a_host_down_at_the_start_is_left_out(servers: list[OllamaTestServer]) -> None:
    down = f"http://127.0.0.1:{closed_port()}"
    logged: list[str] = []
    pool = await open_pool(pool_spec([down, servers[0].url]), log=logged.append)
    try:
        result = await pool.reflect("instruction", PAIRS[0])
        states = {s.host: s.state for s in pool.stats()}
    finally:
        await pool.aclose()
    assert result.outcome == "ok" and result.calls[0].host == servers[0].url
    assert states == {down: "down", servers[0].url: "up"}
    assert any(down in line and "left out" in line for line in logged)


async def test_no_host_at_all_is_a_teacher_error() -> None:
    urls = [f"http://127.0.0.1:{closed_port()}" for _ in range(2)]
    with pytest.raises(TeacherError, match="no host of teacher 'pool' can serve"):
        await open_pool(pool_spec(urls))


# ---------------------------------------------------------------- models.toml


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(body)
    return path


def test_hosts_as_urls_and_tables(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[teachers.farm]
backend = "ollama"
model = "llama3.1:8b"
concurrency = 3
hosts = ["gpu1:11434", {url = "http://gpu2:11434/", concurrency = 1}]

[teachers.vllm]
backend = "openai"
model = "Qwen/Qwen2.5-7B-Instruct"
hosts = [{url = "http://a:8000/v1", concurrency = 16}, "https://b:8000/v1"]
api_key_env = "VLLM_KEY"
output = "json"
""",
    )
    config = load_models(path)
    farm = config.teacher("farm")
    assert farm.hosts == (HostSpec("http://gpu1:11434", 0), HostSpec("http://gpu2:11434", 1))
    vllm = config.teacher("vllm")
    assert [h.url for h in vllm.hosts] == ["http://a:8000/v1", "https://b:8000/v1"]
    assert vllm.api_key_env == "VLLM_KEY" and vllm.response_format == "json_schema"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("hosts = []", "key 'hosts': an empty list"),
        ('hosts = ["a:1", "http://a:1/"]', "key 'hosts[1]': http://a:1 is listed twice"),
        ('hosts = [{url = "a:1", concurrency = -1}]', "[teachers.t.hosts[0]] key 'concurrency'"),
        ('hosts = [{url = "a:1", weight = 2}]', "[teachers.t.hosts[0]] key 'weight': unknown key"),
        ("hosts = [{concurrency = 2}]", "[teachers.t.hosts[0]] key 'url': missing"),
        ("hosts = [3]", "key 'hosts[0]': expected a URL or a table"),
        ('hosts = ["ftp://a"]', "key 'hosts[0]': 'ftp://a' is not a server URL"),
        ('hosts = ["a:port"]', "key 'hosts[0]': 'a:port' has a bad port"),
        ('host = "a:1"\nhosts = ["b:1"]', "key 'host': give either one server here or several"),
        ('hosts = "a:1"', "key 'hosts': expected a list"),
    ],
)
def test_bad_hosts_name_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, f'[teachers.t]\nbackend = "ollama"\nmodel = "m"\n{body}\n')
    with pytest.raises(ConfigError) as info:
        load_models(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('backend = "openai"\nmodel = "m"', "key 'base_url': missing"),
        ('backend = "openai"\nbase_url = "a:1/v1"', "key 'model': missing"),
        ('backend = "openai"\nmodel = "m"\nbase_url = "x:1"\napi_key_env = "A-B"', "api_key_env"),
        ('backend = "openai"\nmodel = "m"\nbase_url = "x:1"\nresponse_format = "x"', "one of"),
        ('backend = "openai"\nmodel = "m"\nbase_url = "x:1"\nhost = "y:1"', "only for backend"),
        ('backend = "ollama"\nmodel = "m"\nbase_url = "x:1"', "key 'base_url': only for backend"),
        ('backend = "llamacpp"\npackage = "p"\nhosts = ["a:1"]', "key 'hosts': only for backend"),
    ],
)
def test_bad_server_settings_name_the_file_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, f"[teachers.t]\n{body}\n")
    with pytest.raises(ConfigError) as info:
        load_models(path)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)


async def test_open_teacher_builds_a_pool_from_models_toml(
    tmp_path: Path, servers: list[OllamaTestServer]
) -> None:
    hosts = ", ".join(json.dumps(s.url) for s in servers[:2])
    path = _write(
        tmp_path,
        f'[teachers.farm]\nbackend = "ollama"\nmodel = "llama3.1:8b"\nconcurrency = 3\n'
        f"hosts = [{hosts}]\n",
    )
    teacher = await open_teacher("farm", load_models(path))
    try:
        assert isinstance(teacher, TeacherPool)
        assert teacher.concurrency == 6 and [s.capacity for s in teacher.stats()] == [3, 3]
        result = await teacher.reflect("instruction", PAIRS[0])
    finally:
        await teacher.aclose()
    assert result.outcome == "ok" and result.calls[0].host in {s.url for s in servers}
    assert result.calls[0].backend == "ollama"


# ---------------------------------------------------------------- a whole run, stored


@pytest.mark.slow
def test_a_run_whose_host_dies_stores_every_call_once_with_its_host(
    tmp_path: Path, servers: list[OllamaTestServer], gemma_gguf: Path
) -> None:
    import threading

    from srt_local.importer import import_dataset
    from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
    from srt_local.run_status import run_status
    from srt_local.store import Store

    data = tmp_path / "eight.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": p.instruction, "input": "", "output": p.output}) + "\n"
            for p in PAIRS[:8]
        )
    )
    hosts = ", ".join(json.dumps(s.url) for s in servers)
    models = _write(
        tmp_path,
        f'[teachers.farm]\nbackend = "ollama"\nmodel = "llama3.1:8b"\nconcurrency = 2\n'
        f"timeout = 10\nhosts = [{hosts}]\n",
    )
    config = load_models(models)
    dying = servers[2]
    # Slow answers from the dying host: its third request is still in flight when it dies, however
    # late a loaded machine runs the killer.
    dying.latency = 3.0

    def kill_mid_run() -> None:
        while len(dying.chat_requests) < 3:
            threading.Event().wait(0.01)
        dying.stop()

    killer = threading.Thread(target=kill_mid_run, daemon=True)
    killer.start()
    with Store.open(tmp_path / "run.duckdb") as store:
        import_dataset(store, data, name="eight")
        run_id = prepare_run(store, RunOptions(dataset="eight", teacher="farm"), config)
        summary = run_pipeline(store, run_id, config)
        killer.join(timeout=5)
        assert summary.status == "done"
        assert store.query("SELECT count(*) FROM decisions")[0][0] == 8
        twice = store.query(
            "SELECT sample_id, stage FROM teacher_calls WHERE outcome = 'ok' "
            "GROUP BY ALL HAVING count(*) > 1"
        )
        assert twice == [], "a reply was stored twice"
        unexplained = store.query(
            "SELECT count(*) FROM versions v WHERE kind IN ('Q', 'A', 'QA') AND NOT EXISTS "
            "(SELECT 1 FROM teacher_calls c WHERE c.call_id = v.call_id AND c.outcome = 'ok')"
        )[0][0]
        assert unexplained == 0
        rows = store.query(
            "SELECT host, count(*) FILTER (WHERE error_kind IS DISTINCT FROM 'unreachable'), "
            "count(error_kind) FROM teacher_calls GROUP BY ALL"
        )
        reached = Counter({host: n for host, n, _errors in rows})
        assert None not in reached
        _check_sent(reached, servers, dying)
        assert {h for h, _n, errors in rows if errors} == {dying.url}
        status = run_status(store, run_id)
    by_host = {h.host: h for h in status.hosts}
    assert set(by_host) <= {s.url for s in servers} and by_host[dying.url].errors > 0
    assert sum(h.calls for h in status.hosts) == status.teacher_calls
    assert all(h.mean_ms is not None for h in status.hosts if h.calls > h.errors)
    # `srt status` prints one line per host.
    shown = subprocess.run(
        [sys.executable, "-m", "srt_local.cli", "status", "--db", str(tmp_path / "run.duckdb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "teacher hosts:" in shown.stdout
    for host in status.hosts:
        assert f"{host.host}: {host.calls} calls, {host.errors} errors" in shown.stdout
