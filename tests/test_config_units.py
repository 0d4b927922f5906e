"""Pure units: configuration, output capture, path checks (no Docker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import Settings, load_settings, parse_size
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
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # not the developer's own config file
    for key in Settings.model_fields:
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
    (tmp_path / ".env").write_text("MODEL_ID=ollama_chat/other:7b\nSANDBOX_MEMORY=3g\nAGENT_MAX_STEPS=9\n")
    monkeypatch.setenv("AGENT_MAX_STEPS", "7")
    (tmp_path / "elsewhere").mkdir()
    # The .env of a directory that is neither the repo smol works on nor inside a git work tree is the user's own.
    settings = load_settings(repo=tmp_path / "elsewhere")
    assert settings.model_id == "ollama_chat/other:7b"
    assert settings.sandbox_memory == 3 * 1024**3
    assert settings.agent_max_steps == 7  # the environment wins over .env
    # Without a repo elsewhere, the current directory is the repo: its .env may only tighten.
    settings = load_settings()
    assert settings.model_id == CONTRACT["model_id"]
    assert settings.sandbox_memory == 3 * 1024**3


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


def test_log_level_and_suppress_warnings_take_effect(capsys: pytest.CaptureFixture[str]) -> None:
    import logging
    import warnings

    from runner.cli import _configure_logging

    ours = logging.getLogger("runner.sandbox.docker_sandbox")
    saved = (logging.getLogger("runner").level, logging.getLogger("LiteLLM").level)
    try:
        with warnings.catch_warnings():
            _configure_logging("INFO", True)
            ours.info("copying the repo")
            ours.debug("hidden detail")
            warnings.warn("a noisy third-party warning", DeprecationWarning, stacklevel=1)
            assert logging.getLogger("LiteLLM").level == logging.ERROR
        err = capsys.readouterr().err
        assert "smol: copying the repo" in err
        assert "hidden detail" not in err and "noisy" not in err

        with warnings.catch_warnings():
            _configure_logging("DEBUG", False)
            ours.debug("now shown")
            ours.warning("the volume stayed")
            with pytest.warns(DeprecationWarning):
                warnings.warn("visible again", DeprecationWarning, stacklevel=1)
            assert logging.getLogger("LiteLLM").level == logging.DEBUG
        err = capsys.readouterr().err
        assert "smol: debug: now shown" in err and "smol: warning: the volume stayed" in err

        _configure_logging("ERROR", True)
        ours.warning("not at ERROR")
        assert "not at ERROR" not in capsys.readouterr().err
        assert len([h for h in logging.getLogger("runner").handlers if getattr(h, "_smol", False)]) == 1
    finally:
        runner_logger = logging.getLogger("runner")
        for handler in [h for h in runner_logger.handlers if getattr(h, "_smol", False)]:
            runner_logger.removeHandler(handler)  # it holds this test's captured stderr
        runner_logger.propagate = True
        runner_logger.setLevel(saved[0])
        logging.getLogger("LiteLLM").setLevel(saved[1])
