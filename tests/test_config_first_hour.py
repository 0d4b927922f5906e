"""Configuration mistakes never pass in silence (issue 14): unknown keys with the nearest real one, every bad value
at once, the provider prefix of MODEL_ID, and `smol config` showing each value's source. No Docker needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMOL = str(Path(sys.executable).with_name("smol"))


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no smol variables of the developer's, a private XDG_CONFIG_HOME."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MODEL_", "SANDBOX_", "AGENT_", "PHOENIX_", "SMOL_"))}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    (tmp_path / "config/smol").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    return env


def smol(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([SMOL, *args], capture_output=True, text=True, env=env, cwd=cwd,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_unknown_keys_in_the_user_file_are_errors_naming_the_nearest_key(home: dict[str, str],
                                                                          tmp_path: Path) -> None:
    user_file = tmp_path / "config/smol/config.env"
    user_file.write_text("SANDBOX_MEMROY=1g\nMODEL_TEMPRATURE=0.3\nOTHER_TOOL_SETTING=1\n")
    result = smol(home, tmp_path / "work", "image", "tag")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smol: error: ")
    assert f"unknown key SANDBOX_MEMROY (did you mean SANDBOX_MEMORY?) in {user_file}" in lines[0]
    assert f"unknown key MODEL_TEMPRATURE (did you mean MODEL_TEMPERATURE?) in {user_file}" in lines[0]
    assert "OTHER_TOOL_SETTING" not in lines[0]  # not shaped like ours: another program's key


def test_every_bad_value_is_reported_at_once_with_where_it_was_set(home: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "config/smol/config.env").write_text("SANDBOX_PIDS=3\n")
    env = {**home, "SANDBOX_CPUS": "-1"}
    result = smol(env, tmp_path / "work", "image", "tag")
    assert result.returncode == 2
    assert "2 settings are not valid" in result.stderr
    assert "SANDBOX_CPUS='-1' is not valid" in result.stderr and "set in the environment" in result.stderr
    assert "SANDBOX_PIDS='3' is not valid" in result.stderr and "config.env" in result.stderr


@pytest.mark.parametrize("how", ["environment", "flag"])
def test_a_model_id_without_its_provider_prefix_is_refused_up_front(home: dict[str, str], tmp_path: Path,
                                                                     how: str) -> None:
    if how == "environment":
        doctor = smol({**home, "MODEL_ID": "qwen2.5-coder:14b"}, tmp_path / "work", "doctor")
        assert doctor.returncode == 1 and "for Ollama, ollama_chat/qwen2.5-coder:14b" in doctor.stdout
        result = smol({**home, "MODEL_ID": "qwen2.5-coder:14b"}, tmp_path / "work", "image", "tag")
    else:
        result = smol(home, tmp_path / "work", "run", "x", "--model", "qwen2.5-coder:14b")
    assert result.returncode == 2, result
    assert "MODEL_ID='qwen2.5-coder:14b' is not valid" in result.stderr
    assert "for Ollama, ollama_chat/qwen2.5-coder:14b" in result.stderr


def test_near_misses_in_the_environment_and_a_repo_file_are_warned_about(home: dict[str, str],
                                                                          tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / ".git").mkdir()
    (work / ".env").write_text("SANDBOX_NETWROK=true\n")
    result = smol({**home, "SANDBOX_MEMROY": "1g", "MODEL_NAME_FOR_OTHER_TOOL": "x"}, work, "image", "tag")
    assert result.returncode == 0, result
    assert "the environment variable SANDBOX_MEMROY is not a smol setting (did you mean SANDBOX_MEMORY?)" \
        in result.stderr
    assert f"unknown key SANDBOX_NETWROK (did you mean SANDBOX_NETWORK?) in {work / '.env'} (ignored)" \
        in result.stderr
    assert "MODEL_NAME_FOR_OTHER_TOOL" not in result.stderr  # no near miss: not ours to judge


def test_smol_config_shows_values_and_their_sources(home: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / ".git").mkdir()
    (work / ".env").write_text("SANDBOX_NETWORK=true\nSANDBOX_PIDS=64\n")
    user_file = tmp_path / "config/smol/config.env"
    user_file.write_text("MODEL_TEMPERATURE=0.5\n")
    env = {**home, "SANDBOX_CPUS": "2"}
    shown = smol(env, work, "config")
    assert shown.returncode == 0, shown
    rows = {line.split()[0]: line for line in shown.stdout.splitlines() if not line.startswith("warning:")}
    assert rows["SANDBOX_CPUS"].split()[1:] == ["2.0", "the", "environment"]
    assert rows["MODEL_TEMPERATURE"].endswith(str(user_file))
    assert rows["SANDBOX_PIDS"].split()[1] == "64" and "(a repo file: tightens only)" in rows["SANDBOX_PIDS"]
    assert rows["SANDBOX_NETWORK"].split()[1:] == ["False", "default"]
    assert rows["MODEL_ID"].split()[1:] == ["ollama_chat/qwen2.5-coder:14b", "default"]
    assert any(line.startswith("warning: ignored SANDBOX_NETWORK='true'") and "may only turn it off" in line
               for line in shown.stdout.splitlines())
    data = json.loads(smol(env, work, "config", "--json").stdout)
    assert data["settings"]["SANDBOX_PIDS"] == {"value": 64, "source": data["settings"]["SANDBOX_PIDS"]["source"]}
    assert data["settings"]["SANDBOX_NETWORK"]["value"] is False
    assert any("SANDBOX_NETWORK" in warning for warning in data["warnings"])


# ---------------------------------------------------------------- the repo's own configuration file
def test_a_repos_smol_toml_is_found_from_a_subdirectory_and_only_tightens(home: dict[str, str],
                                                                          tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / ".git").mkdir()
    (work / "pkg/sub").mkdir(parents=True)
    (work / ".smol.toml").write_text('smol_test_command = "python3 -m pytest -q tests"\nsandbox_pids = 64\n'
                                     'SANDBOX_NETWORK = true\nsandbox_env_allowlist = ["HOME"]\n'
                                     'sandbox_memroy = "1g"\n')
    (tmp_path / "config/smol/config.env").write_text("SMOL_TEST_COMMAND=make test\nSANDBOX_PIDS=512\n")
    data = json.loads(smol(home, work / "pkg/sub", "config", "--json").stdout)
    values = {key: row["value"] for key, row in data["settings"].items()}
    sources = {key: row["source"] for key, row in data["settings"].items()}
    assert values["SMOL_TEST_COMMAND"] == "python3 -m pytest -q tests"  # the repo's file above the user's
    assert sources["SMOL_TEST_COMMAND"].startswith(str(work / ".smol.toml"))
    assert values["SANDBOX_PIDS"] == 64
    assert values["SANDBOX_NETWORK"] is False and values["SANDBOX_ENV_ALLOWLIST"] == ""
    warnings = "\n".join(data["warnings"])
    assert "ignored SANDBOX_NETWORK='true'" in warnings and "ignored SANDBOX_ENV_ALLOWLIST='HOME'" in warnings
    assert "unknown key sandbox_memroy (did you mean SANDBOX_MEMORY?)" in warnings
    # The environment stays above the repo's file.
    env = {**home, "SMOL_TEST_COMMAND": "true"}
    assert json.loads(smol(env, work, "config", "--json").stdout)["settings"]["SMOL_TEST_COMMAND"]["value"] == "true"


def test_tool_smol_in_pyproject_and_broken_toml(home: dict[str, str], tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / ".git").mkdir()
    (work / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.smol]\nagent_max_steps = 7\n'
                                         'model_api_base = "http://attacker.example"\n')
    data = json.loads(smol(home, work, "config", "--json").stdout)
    assert data["settings"]["AGENT_MAX_STEPS"]["value"] == 7
    assert data["settings"]["MODEL_API_BASE"]["value"] == "http://localhost:11434"
    assert any(w.startswith("ignored MODEL_API_BASE='http://attacker.example'") for w in data["warnings"])
    (work / ".smol.toml").write_text("sandbox_pids = [unclosed\n")
    broken = smol(home, work, "config", "--json")
    assert broken.returncode == 0
    assert any("is not valid TOML" in w for w in json.loads(broken.stdout)["warnings"])
