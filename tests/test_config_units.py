"""Pure units: configuration, output capture, path checks (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import load_settings, parse_size
from runner.errors import ConfigError, SandboxPathError
from runner.sandbox.base import normalize_path
from runner.sandbox.output import HeadTailBuffer

CONTRACT = {
    "model_id": "ollama_chat/qwen2.5-coder:14b", "model_api_base": "http://localhost:11434",
    "model_temperature": 0.1, "model_max_tokens": 1024, "agent_max_steps": 25, "phoenix_enabled": True,
    "phoenix_endpoint": "http://localhost:6006/v1/traces", "validation_max_chars": 5000,
    "validation_max_lines": 200, "validation_max_line_range": 1000, "truncation_max_chars": 3000,
    "truncation_max_lines": 150, "truncation_max_list_items": 100, "log_level": "INFO", "suppress_warnings": True,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for key in [*CONTRACT, "sandbox_memory", "sandbox_disk"]:
        monkeypatch.delenv(key.upper(), raising=False)


def test_defaults_are_the_documented_contract() -> None:
    settings = load_settings()
    for key, value in CONTRACT.items():
        assert getattr(settings, key) == value, key
    example = (Path(__file__).parents[1] / ".env.example").read_text()
    for key, value in CONTRACT.items():
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert f"{key.upper()}={shown}" in example, key


def test_env_file_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MODEL_ID=ollama_chat/other:7b\nSANDBOX_MEMORY=3g\n")
    monkeypatch.setenv("AGENT_MAX_STEPS", "7")
    settings = load_settings()
    assert settings.model_id == "ollama_chat/other:7b"
    assert settings.sandbox_memory == 3 * 1024**3
    assert settings.agent_max_steps == 7


@pytest.mark.parametrize(("key", "value"), [("SANDBOX_MEMORY", "lots"), ("AGENT_MAX_STEPS", "many"),
                                             ("SANDBOX_PIDS", "3"), ("LOG_LEVEL", "LOUD"),
                                             ("PHOENIX_ENABLED", "perhaps"), ("SANDBOX_DISK", "-5m")])
def test_bad_values_name_the_key(key: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert key in message and "\n" not in message and raised.value.exit_code == 2


def test_disk_must_fit_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_DISK", "8g")
    with pytest.raises(ConfigError, match="SANDBOX_DISK"):
        load_settings()


def test_sizes() -> None:
    assert parse_size("2g") == 2 * 1024**3
    assert parse_size("512M") == 512 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    assert parse_size(4096) == 4096
    with pytest.raises(ValueError):
        parse_size("lots")


def test_head_tail_buffer_keeps_both_ends_bounded() -> None:
    buffer = HeadTailBuffer(100)
    for index in range(10_000):
        buffer.write(f"{index:05d}".encode())
    value = buffer.getvalue()
    assert buffer.truncated and buffer.total == 50_000
    assert value.startswith(b"00000000010000200003") and value.endswith(b"09999")
    assert b"bytes omitted" in value and len(value) < 200
    small = HeadTailBuffer(100)
    small.write(b"abc")
    assert small.getvalue() == b"abc" and not small.truncated


@pytest.mark.parametrize("bad", ["/etc/passwd", "..", "../x", "a/../../b", "~/x", "a\x00b"])
def test_paths_that_escape_are_refused(bad: str) -> None:
    with pytest.raises(SandboxPathError):
        normalize_path(bad)


def test_paths_are_normalised() -> None:
    assert normalize_path("") == "."
    assert normalize_path("./src//app.py") == "src/app.py"
    assert normalize_path("src/../README.md") == "README.md"
