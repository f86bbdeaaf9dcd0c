"""`srt run` as a user drives it (issue 9, items 1, 6 and 9): documented exit codes, Ctrl-C and
SIGTERM pause and say how to resume, `srt status` from another terminal while the run holds the
store, a killed run shown as interrupted, and hostile teacher replies (markup, escapes, a lone
surrogate) stored and shown safely, failing their own sample only.

The teacher is the Ollama-protocol test server; the student is the real Gemma GGUF.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from srt_local.importer import import_dataset
from srt_local.pairs import Pair
from srt_local.run_owner import claim, shown_status
from srt_local.store import Store
from tests.hostile import HOSTILE, LONE_SURROGATE, RAW_CONTROLS
from tests.ollama_server import Action, Error, OllamaTestServer, Reply

PAIRS = [
    {"instruction": "List three primary colours.", "input": "", "output": "Red, blue, yellow."},
    {"instruction": "What is 12 times 12?", "input": "", "output": "144."},
    {"instruction": "Suggest a name for a bakery.", "input": "", "output": "Rise & Shine."},
    {"instruction": "Why is the sky blue?", "input": "", "output": "Air scatters blue light."},
]


class RuleServer(OllamaTestServer):
    """The test server, answering each chat request by a rule on its body (None: as usual)."""

    def __init__(self, rule: Callable[[dict[str, Any]], Action | None], **kw: Any) -> None:
        super().__init__(**kw)
        self.rule = rule
        self._body = threading.local()

    def _record(self, method: str, path: str, body: Any) -> None:
        self._body.value = body
        super()._record(method, path, body)

    def _next_action(self) -> Action | None:
        body = getattr(self._body, "value", None) or {}
        return self.rule(body) or super()._next_action()


def _user_text(body: dict[str, Any]) -> str:
    return " ".join(str(m.get("content", "")) for m in body.get("messages", []))


def srt_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "srt_local.cli", *[str(a) for a in args]]


def srt(
    *args: str | Path, server: OllamaTestServer | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"OLLAMA_HOST": server.url} if server else {})}
    return subprocess.run(srt_cmd(*args), capture_output=True, text=True, env=env, timeout=600)


def make_db(tmp_path: Path, pairs: list[dict[str, str]], name: str = "four") -> Path:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    db = tmp_path / "s.duckdb"
    with Store.open(db) as store:
        import_dataset(store, data, name=name)
    return db


def run_row(db: Path, run_id: int = 1) -> dict[str, Any]:
    with Store.open(db, read_only=True) as store:
        return store.query_dicts("SELECT * FROM runs WHERE run_id = ?", [run_id])[0]


def wait_for(check: Callable[[], bool], what: str, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(autouse=True)
def _student(gemma_gguf: Path) -> None:
    """The default student must be there (the run loads it)."""


# ---------------------------------------------------------------- exit codes


def test_done_exits_0_with_the_run_id_on_stdout(tmp_path: Path) -> None:
    db = make_db(tmp_path, PAIRS[:2])
    with OllamaTestServer() as server:
        out = srt("run", "four", "--db", db, server=server)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
    assert "kept " in out.stderr and "rejected " in out.stderr
    assert run_row(db)["status"] == "done"


def test_incomplete_exits_3_and_every_failure_exits_4(tmp_path: Path) -> None:
    db = make_db(tmp_path, PAIRS[:3])

    def fail_bakery(body: dict[str, Any]) -> Action | None:
        return Error(503, "server busy") if "bakery" in _user_text(body) else None

    with RuleServer(fail_bakery) as server:
        out = srt("run", "four", "--db", db, server=server)
    assert out.returncode == 3, out.stderr
    assert "run the same command again" in out.stderr and "Traceback" not in out.stderr
    assert run_row(db)["status"] == "incomplete"

    (tmp_path / "all").mkdir()
    db2 = make_db(tmp_path / "all", PAIRS[:2])
    with RuleServer(lambda body: Error(503, "server busy")) as server:
        out = srt("run", "four", "--db", db2, server=server)
    assert out.returncode == 4, out.stderr
    assert "every sample met teacher errors" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout.strip() == "1"


def test_unknown_dataset_creates_no_store(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    out = srt("run", "typo", "--db", db)
    assert out.returncode == 2 and "typo" in out.stderr and "Traceback" not in out.stderr
    assert not db.exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- watching, stopping, killing


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_pauses_says_how_to_resume_and_status_watches(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = make_db(tmp_path, PAIRS)
    with OllamaTestServer(latency=1.5) as server:
        env = {**os.environ, "OLLAMA_HOST": server.url}
        proc = subprocess.Popen(
            srt_cmd("run", "four", "--db", db, "--concurrency", "1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            wait_for(lambda: len(server.chat_requests) >= 1, "the first teacher request")
            # Another terminal: the store is held by the run, status reads a snapshot.
            status = srt("status", "--db", db, "--json")
            assert status.returncode == 0, status.stderr
            assert "snapshot" in status.stderr
            assert json.loads(status.stdout)["status"] == "running"
            table = srt("status", "--db", db)
            assert table.returncode == 0 and "running" in table.stdout  # results on stdout
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert out.strip() == "1"  # the id of the run, which exists however it ended
    assert "paused" in err and "Resume with: srt run four --concurrency 1 --db" in err, err
    assert "samples are decided and stored" in err and "Traceback" not in err
    assert run_row(db)["status"] == "paused"
    status = srt("status", "--db", db, "--json")
    assert json.loads(status.stdout)["status"] == "paused" and "snapshot" not in status.stderr


def test_killed_run_shows_interrupted_and_resumes(tmp_path: Path) -> None:
    db = make_db(tmp_path, PAIRS[:2])
    with OllamaTestServer(latency=1.5) as server:
        env = {**os.environ, "OLLAMA_HOST": server.url}
        proc = subprocess.Popen(
            srt_cmd("run", "four", "--db", db),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_for(lambda: len(server.chat_requests) >= 1, "the first teacher request")
        proc.kill()  # kill -9: no handler runs
        proc.wait()
        row = run_row(db)
        assert row["status"] == "running" and row["owner_pid"] == proc.pid
        status = srt("status", "--db", db, "--json")
        assert status.returncode == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["status"] == "interrupted" and shown["stored_status"] == "running"
        assert "interrupted" in srt("status", "--db", db).stdout
        again = srt("run", "four", "--db", db, server=server)
    assert again.returncode == 0, again.stderr
    assert run_row(db)["status"] == "done"


def test_claim_pauses_runs_left_running_by_a_gone_process(tmp_path: Path) -> None:
    db = make_db(tmp_path, PAIRS[:1])
    with Store.open(db) as store:
        with store.transaction() as con:
            for _ in range(2):
                con.execute(
                    "INSERT INTO runs (dataset_id, teacher_name, teacher_key, student_name, "
                    "student_sha256, template, max_tokens, emit_unreflected, config, status, "
                    "owner_pid, owner_host) SELECT dataset_id, 't', 'k', 's', 'x', 'vicuna', 64, "
                    "false, '{}', 'running', 999999, 'elsewhere' FROM datasets"
                )
        claim(store, 2)
        rows = store.query_dicts("SELECT run_id, status, owner_pid FROM runs ORDER BY run_id")
    assert rows[0]["status"] == "paused"  # orphaned: nobody else can hold the store
    assert rows[1]["status"] == "running" and rows[1]["owner_pid"] == os.getpid()
    mine = {"status": "running", "owner_pid": os.getpid(), "owner_host": os.uname().nodename}
    assert shown_status(mine, store_is_held=True) == "running"
    assert shown_status({**mine, "owner_pid": 2**22 + 12345}, store_is_held=True) == "interrupted"
    assert shown_status(mine, store_is_held=False) == "interrupted"
    assert shown_status({**mine, "status": "done"}, store_is_held=False) == "done"


# ---------------------------------------------------------------- hostile replies


HOSTILE_NAMES = ("markup_close", "index", "emoji_code", "ansi", "rtl", "nul_and_controls")


def test_hostile_replies_are_stored_exactly_and_a_surrogate_fails_its_sample(
    tmp_path: Path,
) -> None:
    pairs = [
        {"instruction": f"Explain {HOSTILE[n]}", "input": "", "output": f"It is {HOSTILE[n]}"}
        for n in HOSTILE_NAMES
    ]
    db = make_db(tmp_path, pairs, name="llama[/INST]")
    hostile_answer = f"{HOSTILE['ansi']} [/INST] print(my_list[i]) :x: {HOSTILE['rtl']}"

    def rule(body: dict[str, Any]) -> Action | None:
        text = _user_text(body)
        if "[Better Answer]" not in text:
            return None  # instruction stage: the default reply, which quotes the instruction
        if "print(my_list[i])" in text:  # that sample's response reply is not text
            return Reply(text=f"{LONE_SURROGATE}\n[Better Answer]\nfine words here\n[End]")
        return Reply(text=f"critique\n[Better Answer]\n{hostile_answer}\n[End]")

    with RuleServer(rule) as server:
        out = srt("run", "llama[/INST]", "--db", db, server=server)
        assert out.returncode == 0, out.stderr
        for char in RAW_CONTROLS:
            assert char not in out.stderr
        with Store.open(db, read_only=True) as store:
            failed = store.query(
                "SELECT raw_reply, error_message FROM teacher_calls WHERE error_message LIKE "
                "'%lone surrogate%'"
            )
            answers = store.query("SELECT output FROM versions WHERE kind IN ('A', 'QA')")
            decided = store.query("SELECT count(*) FROM decisions")[0][0]
        assert failed and "broken \\ud800 surrogate" in failed[0][0]
        assert (hostile_answer,) in answers  # stored exactly, escapes and all
        assert decided == len(pairs)  # the surrogate failed its own sample's reflection only
        status = srt("status", "--db", db)
        assert status.returncode == 0 and "llama[/INST]" in status.stdout
        for char in RAW_CONTROLS:
            assert char not in status.stdout
        again = srt("run", "llama[/INST]", "--db", db, server=server)
    assert again.returncode == 0, again.stderr  # the rerun does not fail the same way


async def test_json_reply_nested_too_deeply_or_not_text_fails_that_sample(
    tmp_path: Path,
) -> None:
    from srt_local.config import TeacherOptions, TeacherSpec
    from srt_local.teacher_log import record_call
    from srt_local.teachers.chat import RetryPolicy
    from srt_local.teachers.ollama import OllamaTeacher

    with OllamaTestServer() as server:
        spec = TeacherSpec(
            name="t",
            backend="ollama",
            model=server.model,
            host=server.url,
            output="json",
            max_attempts=2,
            options=TeacherOptions(num_ctx=8192, num_predict=4096),
        )
        teacher = await OllamaTeacher.open(spec, retry=RetryPolicy(base_delay=0.01))
        nested = '{"critique": "x", "better_answer": ' + "[" * 1500 + "]" * 1500 + "}"
        server.script(Reply(text=nested), Reply(text='{"better_answer": "' + LONE_SURROGATE + '"}'))
        result = await teacher.reflect("response", Pair("Say hi.", "", "Hi."))
        await teacher.aclose()
    assert result.outcome == "parse_failed" and result.reflection is None
    details = [call.error_message or "" for call in result.calls]
    assert "nests too deeply" in details[0] and "lone surrogate" in details[1]
    with Store.open(tmp_path / "s.duckdb") as store, store.transaction() as con:
        for call in result.calls:  # every attempt is storable
            record_call(con, call, None, "ori", teacher.key)
