"""A local HTTP server that speaks Ollama's API (`/api/tags`, `/api/show`, `/api/chat`) with scripted answers.

This is the only stand-in in the test suite: no model weights are reachable here. litellm reaches it over the wire,
so the whole path (LiteLLMModel -> litellm -> HTTP -> tool calls) is exercised. It can also run as a process:
`python -m tests.fake_ollama SCRIPT.json PORTFILE` (used by end-to-end CLI tests).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Answer = dict[str, Any]
"""{"tool": name, "arguments": {...}} for a native tool call, {"content": text} for plain text,
{"status": 500} for an HTTP error, {"delay": seconds, ...} to answer late."""


def tool(name: str, **arguments: Any) -> Answer:
    return {"tool": name, "arguments": arguments}


def final(answer: str) -> Answer:
    return tool("final_answer", answer=answer)


class FakeOllama:
    def __init__(self, script: list[Answer | Callable[[dict[str, Any]], Answer]], *,
                 models: tuple[str, ...] = ("qwen2.5-coder:14b",), port: int = 0) -> None:
        self.script = list(script)
        self.models = models
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeOllama:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def next_answer(self, request: dict[str, Any]) -> Answer:
        with self._lock:
            self.requests.append(request)
            if not self.script:
                return final("script exhausted")
            item = self.script.pop(0)
        return item(request) if callable(item) else item

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, payload: Any, status: int = 200) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.startswith("/api/tags"):
                    self._send({"models": [{"name": name, "model": name} for name in fake.models]})
                else:
                    self._send({"error": "not found"}, 404)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                if self.path.startswith("/api/show"):
                    self._send({"template": "{{ .Prompt }}", "capabilities": ["completion", "tools"],
                                "details": {"family": "qwen2"}, "model_info": {"qwen2.context_length": 32768}})
                    return
                if not self.path.startswith("/api/chat"):
                    self._send({"error": "not found"}, 404)
                    return
                answer = fake.next_answer(request)
                if answer.get("delay"):
                    time.sleep(float(answer["delay"]))
                if answer.get("status"):
                    self._send({"error": "scripted failure"}, int(answer["status"]))
                    return
                message: dict[str, Any] = {"role": "assistant", "content": answer.get("content", "")}
                if "tool" in answer:
                    message["tool_calls"] = [{"function": {"name": answer["tool"],
                                                           "arguments": answer.get("arguments", {})}}]
                payload = {"model": request.get("model", ""), "created_at": "2026-01-01T00:00:00Z",
                           "message": message, "done": True, "done_reason": "stop",
                           "prompt_eval_count": 100, "eval_count": 20, "total_duration": 1000}
                if answer.get("count_prompt"):  # about what Ollama would count: 4 characters a token
                    payload["prompt_eval_count"] = len(json.dumps(request.get("messages", []))) // 4
                if request.get("stream"):
                    # As Ollama streams: the text in pieces (done false), then tool calls and counts (done true).
                    text = str(message["content"])
                    pieces = [text[i:i + 8] for i in range(0, len(text), 8)]
                    lines = [{**payload, "message": {"role": "assistant", "content": piece}, "done": False}
                             for piece in pieces]
                    lines.append({**payload, "message": {**message, "content": ""}})
                    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                else:
                    self._send(payload)

        return Handler


def main(argv: list[str]) -> None:
    script = json.loads(Path(argv[1]).read_text())
    server = FakeOllama(script)
    Path(argv[2]).write_text(server.url)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
