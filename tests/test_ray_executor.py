"""Scoring on Ray, for real: a loopback cluster, the real Gemma student, the Ollama-protocol teacher.

One cluster (2 CPUs, started the way `srt` starts its own) serves the whole module, because Ray
takes tens of seconds to start on two cores. Every run's decisions are compared with a local
run's on the same data: CPU scores do not depend on the batch or the process they are made in.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from srt_local.config import load_models
from srt_local.executors import ExecutorError, RaySettings, ray_scorer_factory
from srt_local.importer import import_dataset
from srt_local.pipeline import RunOptions, prepare_run, run_pipeline
from srt_local.store import Store
from tests.ollama_server import OllamaTestServer
from tests.pairs import SIX_PAIRS

ray = pytest.importorskip("ray")  # the dev extra installs it; a bare install has no Ray
from srt_local.executors import ray_scoring  # noqa: E402  (imports ray)

REPO = Path(__file__).resolve().parents[1]
PAIRS = SIX_PAIRS
STUDENT = "smollm2-135m"  # the smaller embedded model: these runs score some 20 pairs each
LOOPBACK_LISTEN = re.compile(r"^(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]|\[::1\]):\d+$")


def _decisions(store: Store, run_id: int) -> list[tuple[object, ...]]:
    return store.query(
        "SELECT s.position, d.branch, d.emitted, d.passes, round(d.ifd_final, 4), "
        "round(d.rifd_final, 4) FROM decisions d JOIN samples s USING (sample_id) "
        "WHERE run_id = ? ORDER BY s.position",
        [run_id],
    )


def _scores(store: Store) -> list[tuple[object, ...]]:
    return store.query(
        "SELECT pair_hash, status, round(ifd_ppl, 6), round(rifd_ppl, 6) FROM scores ORDER BY 1"
    )


def _new_store(path: Path, data: Path) -> Store:
    store = Store.open(path)
    import_dataset(store, data, name="six")
    return store


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-data") / "six.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return path


@pytest.fixture(scope="module")
def teacher() -> Iterator[OllamaTestServer]:
    with OllamaTestServer(latency=0.3) as server:
        os.environ["OLLAMA_HOST"] = server.url
        try:
            yield server
        finally:
            os.environ.pop("OLLAMA_HOST", None)


@pytest.fixture(scope="module")
def cluster(smollm_gguf: Path) -> Iterator[str]:
    """A 2-CPU cluster on loopback, started as `srt --executor ray` starts one; its address."""
    assert smollm_gguf.is_file()  # assembled once here, before the actors look for it
    started = ray_scoring.connect(RaySettings(workers=2, threads=1))
    assert started, "no other Ray connection may be open in this process"
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def reference(
    data: Path, teacher: OllamaTestServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Decisions and scores of a local run (the student in this process)."""
    with _new_store(tmp_path_factory.mktemp("ray-ref") / "local.duckdb", data) as store:
        config = load_models()
        run_id = prepare_run(
            store, RunOptions(dataset="six", teacher="ollama", student=STUDENT), config
        )
        assert run_pipeline(store, run_id, config).status == "done"
        return _decisions(store, run_id), _scores(store)


def _ray_run(
    store: Store, settings: RaySettings, during: Any = None
) -> tuple[int, list[ray_scoring.RayScorer], list[str]]:
    """A run whose student scores on Ray; `during(scorer)` runs in a thread once it exists."""
    config = load_models()
    logs: list[str] = []
    made: list[ray_scoring.RayScorer] = []
    base = ray_scorer_factory(settings, config, store, logs.append)

    async def make(run: Any) -> Any:
        scorer = await base(run)
        made.append(scorer)  # type: ignore[arg-type]
        if during is not None:
            threading.Thread(target=during, args=(scorer,), daemon=True).start()
        return scorer

    run_id = prepare_run(
        store, RunOptions(dataset="six", teacher="ollama", student=STUDENT), config
    )
    assert run_pipeline(store, run_id, config, scorer_factory=make).status == "done"
    return run_id, made, logs


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_cluster_binds_loopback_only(cluster: str) -> None:
    assert cluster.startswith("127.0.0.1:")
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
    assert ray.cluster_resources()["CPU"] == 2
    ours = _descendants(os.getpid())
    listen = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    sockets = [
        line.split()[3]
        for line in listen.splitlines()
        if any(f"pid={pid}," in line for pid in ours)
    ]
    assert sockets, "the cluster's processes listen somewhere"
    assert all(LOOPBACK_LISTEN.match(s) for s in sockets), sockets


def test_workers_the_cluster_cannot_place_are_an_error(cluster: str) -> None:
    spec = load_models().student(STUDENT)
    with pytest.raises(ExecutorError, match="need 3 CPUs, the cluster has 2"):
        ray_scoring.open_pool(RaySettings(workers=3), spec, None, None, print)


def test_ray_options_without_the_ray_executor_are_an_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from srt_local.cli import cli

    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps(PAIRS[0]) + "\n")
    result = CliRunner().invoke(cli, ["score", str(pairs), "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers needs --executor ray" in result.output


def test_ray_run_decides_as_a_local_run(
    cluster: str, data: Path, reference: tuple[list[Any], list[Any]], tmp_path: Path
) -> None:
    settings = RaySettings(workers=2, threads=1, batch_size=4)
    with _new_store(tmp_path / "ray.duckdb", data) as store:
        run_id, made, logs = _ray_run(store, settings)
        assert _decisions(store, run_id) == reference[0]
        assert _scores(store) == reference[1]
        stats = made[0].pool.stats
        # Each distinct pair went to an actor once; the cache answered nothing (a new store).
        assert stats.sent_pairs == len(reference[1]) and stats.resent == 0
    assert any("2 student actor(s)" in line for line in logs)


def test_killed_actor_loses_nothing(
    cluster: str, data: Path, reference: tuple[list[Any], list[Any]], tmp_path: Path
) -> None:
    settings = RaySettings(workers=2, threads=1, batch_size=2, max_restarts=2)
    killed: list[int] = []

    def kill_a_busy_actor(scorer: ray_scoring.RayScorer) -> None:
        pool = scorer.pool
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            held = [i for i, _ in list(pool.in_flight.values())]
            if held:
                ray.kill(pool.actors[held[0]], no_restart=False)
                killed.append(held[0])
                return
            time.sleep(0.005)

    with _new_store(tmp_path / "killed.duckdb", data) as store:
        run_id, made, logs = _ray_run(store, settings, during=kill_a_busy_actor)
        assert killed, "the kill landed while a batch was in flight"
        stats = made[0].pool.stats
        assert stats.resent >= 1, logs
        assert _decisions(store, run_id) == reference[0]
        assert _scores(store) == reference[1]
        # A resent batch is scored again, but each score is stored once (the store's key).
        assert store.query("SELECT count(*) FROM scores")[0][0] == len(reference[1])


def _driver(db: Path, cluster: str, teacher: OllamaTestServer) -> subprocess.Popen[str]:
    env = {**os.environ, "OLLAMA_HOST": teacher.url, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "srt_local.cli",
            "run",
            "six",
            "--teacher",
            "ollama",
            "--student",
            STUDENT,
            "--executor",
            "ray",
            "--ray-address",
            cluster,
            "--workers",
            "2",
            "--db",
            str(db),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def test_killed_driver_resumes_without_rescoring(
    cluster: str,
    data: Path,
    teacher: OllamaTestServer,
    reference: tuple[list[Any], list[Any]],
    tmp_path: Path,
    srt_home: Path,
) -> None:
    db = tmp_path / "driver.duckdb"
    _new_store(db, data).close()
    user_toml = srt_home / "config" / "models.toml"
    assert not user_toml.exists()
    user_toml.parent.mkdir(parents=True, exist_ok=True)
    user_toml.write_text("[ray]\nbatch_size = 2\n")  # small batches: the kill lands between them
    try:
        first = _driver(db, cluster, teacher)
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: lines.extend(iter(first.stderr.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + 180
        # Once a batch is stored, the next one is in flight: the kill lands mid-run.
        while time.monotonic() < deadline and first.poll() is None:
            if any("first batch back" in line for line in lines):
                break
            time.sleep(0.02)
        assert first.poll() is None, "".join(lines)
        first.send_signal(signal.SIGKILL)
        first.wait()
        with Store.open(db, read_only=True) as store:
            stored = store.query("SELECT count(*) FROM scores")[0][0]
            decided = store.query("SELECT count(*) FROM decisions")[0][0]
        assert stored >= 1 and decided < len(PAIRS), (stored, decided)

        second = _driver(db, cluster, teacher)
        _out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
    finally:
        user_toml.unlink()
    sent = re.search(r"ray: (\d+) pairs scored on workers", err)
    assert sent is not None, err
    with Store.open(db, read_only=True) as store:
        run_id = store.query("SELECT run_id FROM runs")[0][0]
        assert _decisions(store, run_id) == reference[0]
        assert _scores(store) == reference[1]
        # The second driver scored what the store lacked, and nothing it had.
        assert int(sent.group(1)) == len(reference[1]) - stored


@pytest.mark.slow
def test_two_nodes_on_loopback_score_as_local(tmp_path: Path, gemma_gguf: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    local = subprocess.run(
        [sys.executable, "-m", "srt_local.cli", "score", str(pairs), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert local.returncode == 0, local.stderr
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    two = subprocess.run(
        ["bash", str(REPO / "scripts" / "ray_two_node.sh"), str(pairs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=400,
    )
    assert two.returncode == 0, two.stderr
    assert "2 node(s)" in two.stderr
    assert "stopped both nodes" in two.stderr
    assert two.stdout == local.stdout
