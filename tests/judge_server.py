"""The Ollama-protocol test server playing a deterministic judge.

A judge request (its `format` schema has a "verdict" key) is answered by `rule(a, b)`, given the
two examples the prompt shows; every other request gets the test server's default reply, so the
same server can also be the teacher of the run being judged.

    with JudgeTestServer(rule=lambda a, b: "A") as server:  # a judge that always picks A
        ...
        server.judge_requests
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.ollama_server import Action, OllamaTestServer, RecordedRequest, Reply


@dataclass(frozen=True)
class Example:
    """One example as the judge prompt shows it."""

    instruction: str
    input: str
    output: str


Rule = Callable[[Example, Example], str]


def longer_wins(a: Example, b: Example) -> str:
    """A judge that prefers the longer response (the bias the length control corrects)."""
    if len(a.output) == len(b.output):
        return "tie"
    return "A" if len(a.output) > len(b.output) else "B"


def is_judge_request(body: Any) -> bool:
    fmt = body.get("format") if isinstance(body, dict) else None
    return isinstance(fmt, dict) and "verdict" in fmt.get("properties", {})


def shown_examples(body: dict[str, Any]) -> tuple[Example, Example]:
    """Examples A and B from a judge request's user message."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    examples = []
    for name in ("A", "B"):
        block = re.search(rf"### Example {name}\n(.*?)(?=\n### )", user, re.DOTALL)
        assert block, f"no example {name} in the judge prompt"
        text = block.group(1)
        instruction = re.search(
            r"#### Instruction\n(.*?)\n(?:#### Input|#### Response)", text, re.DOTALL
        )
        given = re.search(r"#### Input\n(.*?)\n#### Response", text, re.DOTALL)
        output = re.search(r"#### Response\n(.*)\Z", text, re.DOTALL)
        assert instruction and output
        examples.append(
            Example(
                instruction.group(1).strip(),
                given.group(1).strip() if given else "",
                output.group(1).strip(),
            )
        )
    return examples[0], examples[1]


class JudgeTestServer(OllamaTestServer):
    """An OllamaTestServer whose judge replies follow `rule` (default: the longer response)."""

    def __init__(self, rule: Rule = longer_wins, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule
        # The handler thread records a request and then asks for its action: the body in between.
        self._bodies = threading.local()

    @property
    def judge_requests(self) -> list[RecordedRequest]:
        return [r for r in self.chat_requests if is_judge_request(r.body)]

    def _record(self, method: str, path: str, body: Any) -> None:
        super()._record(method, path, body)
        self._bodies.body = body

    def _next_action(self) -> Action | None:
        action = super()._next_action()
        body = getattr(self._bodies, "body", None)
        if action is None and body is not None and is_judge_request(body):
            a, b = shown_examples(body)
            verdict = self.rule(a, b)
            reason = f"{verdict}: judged by the test rule"
            return Reply(text=json.dumps({"reason": reason, "verdict": verdict}))
        return action
