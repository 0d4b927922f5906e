"""Prepared environments, without the engine: what detection makes of a repo's files, and the cache key."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import load_settings_and_warnings
from runner.env.key import env_tag, input_hash, repo_slug
from runner.env.plan import SETUP_SCRIPT, plan_for

FLASKISH = """
[project]
name = "demo"
version = "1"
dependencies = ["werkzeug>=3"]
[project.optional-dependencies]
docs = ["sphinx"]
test = ["pytest"]
[dependency-groups]
tests = ["pytest", "asgiref"]
typing = ["mypy"]
[build-system]
requires = ["flit_core"]
build-backend = "flit_core.buildapi"
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_uv_lock_installs_the_locked_test_groups_then_the_project_editable(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"pyproject.toml": FLASKISH, "uv.lock": "version = 1\n"}))
    assert plan.kinds == ("python",) and plan.needs_uv
    assert plan.inputs == ("pyproject.toml", "uv.lock")
    script = plan.user_script.splitlines()
    export = next(line for line in script if line.startswith("uv export"))
    assert "--frozen" in export and "--group tests" in export and "--extra test" in export
    assert "typing" not in export and "docs" not in export  # only the sets that hold what tests need
    assert script.index(export) < script.index("uv pip install -r /tmp/smol-locked.txt") < \
        script.index("uv pip install -e .")  # the lock decides the versions; the project comes last, editable
    assert plan.image_env["VIRTUAL_ENV"] == "/opt/smol-env"
    assert plan.image_env["PATH"].startswith("/opt/smol/bin:/opt/smol-env/bin:")  # smol's helpers stay first


def test_pyproject_without_a_lock_installs_extras_and_groups(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"pyproject.toml": FLASKISH}))
    assert "uv pip install -e '.[test]' --group tests" in plan.user_script
    assert "uv export" not in plan.user_script


def test_requirements_files_and_setup_py(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {
        "setup.py": "from setuptools import setup\nsetup(name='x', extras_require={'tests': ['pytest']})\n",
        "requirements-dev.txt": "-e .\npytest==8.0\n", "requirements.txt": "six\n",
        "requirements-docs.txt": "sphinx\n", "requirements/test.txt": "mock\n",
    }))
    assert plan.inputs == ("requirements-dev.txt", "requirements.txt", "requirements/test.txt", "setup.py")
    assert "uv pip install -r requirements-dev.txt -r requirements.txt -r requirements/test.txt" in plan.user_script
    assert "uv pip install -e '.[tests]'" in plan.user_script
    assert "docs" not in plan.user_script


def test_setup_cfg_extras(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"setup.cfg": "[metadata]\nname = x\n[options.extras_require]\ntesting = "
                                                  "pytest\nspeed = ujson\n"}))
    assert "uv pip install -e '.[testing]'" in plan.user_script


def test_a_pyproject_of_tool_settings_only_declares_nothing(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n",
                                     "tests/test_x.py": "def test(): pass\n"}))
    assert not plan.declares_dependencies and plan.user_script == ""


def test_hostile_names_never_reach_the_script(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {
        "pyproject.toml": '[project]\nname="x"\n[project.optional-dependencies]\n"$(reboot)" = ["a"]\ntest = []\n'
                          '[dependency-groups]\n"tests;rm -rf /" = ["b"]\n',
        "requirements-$(id).txt": "x\n",
    }))
    assert "reboot" not in plan.user_script and "rm -rf" not in plan.user_script and "$(id)" not in plan.user_script


def test_the_users_script_replaces_detection(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {SETUP_SCRIPT: "uv pip install requests\n", ".smol/extra.txt": "x\n",
                                     "requirements.txt": "six\n"}))
    assert plan.kinds == ("script",)
    assert plan.user_script.splitlines()[-1] == f"bash {SETUP_SCRIPT}"
    assert set(plan.inputs) == {SETUP_SCRIPT, ".smol/extra.txt", "requirements.txt"}


def test_go_adds_its_toolchain_as_root_and_never_fetches_in_the_sandbox(tmp_path: Path) -> None:
    plan = plan_for(write(tmp_path, {"go.mod": "module example.com/x\n\ngo 1.19\n", "go.sum": ""}))
    assert plan.kinds == ("go",) and not plan.needs_uv
    assert "apt-get" in plan.root_script and "install -y" in plan.root_script and "golang-go" in plan.root_script
    assert "go mod download" in plan.user_script
    assert plan.image_env["GOPROXY"] == "off" and plan.image_env["GOCACHE"].startswith("/tmp/")


def test_the_key_follows_the_defining_files_and_the_base_image(tmp_path: Path) -> None:
    root = write(tmp_path / "My Repo!", {"pyproject.toml": FLASKISH, "uv.lock": "version = 1\n",
                                         "src/app.py": "x = 1\n"})
    plan = plan_for(root)
    first = input_hash(root, plan, "sha256:base1")
    (root / "src/app.py").write_text("x = 2\n")  # code is not an input: the overlay brings it
    assert input_hash(root, plan_for(root), "sha256:base1") == first
    assert input_hash(root, plan, "sha256:base2") != first
    (root / "uv.lock").write_text("version = 1\n# changed\n")
    assert input_hash(root, plan_for(root), "sha256:base1") != first
    tag = env_tag(root, plan, "sha256:base1")
    assert tag.startswith("smol-env:my-repo-") and len(tag.split("-")[-1]) == 16
    assert repo_slug(tmp_path / "...") == "repo"


@pytest.mark.parametrize(("value", "taken"), [("deny", True), ("allow", False), ("ask", False)])
def test_a_repo_file_can_only_deny_the_set_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str,
                                              taken: bool) -> None:
    monkeypatch.delenv("SMOL_ENV_SETUP", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    repo = write(tmp_path / "repo", {".git/HEAD": "ref: refs/heads/main\n",
                                     ".smol.toml": f'SMOL_ENV_SETUP = "{value}"\nSMOL_ENV_INDEX_URL = "http://x"\n'})
    settings, warnings = load_settings_and_warnings(repo)
    assert settings.smol_env_setup == (value if taken else "ask")
    assert settings.smol_env_index_url == ""
    assert any("SMOL_ENV_INDEX_URL" in warning for warning in warnings)
    assert any("SMOL_ENV_SETUP" in warning for warning in warnings) == (value == "allow")


@pytest.mark.parametrize(("setting", "flag", "remembered", "answer", "expected", "asked"), [
    ("ask", None, False, True, True, True),      # the first time on a terminal: asked, and the yes is remembered
    ("ask", None, True, False, True, False),     # remembered: not asked again
    ("ask", None, False, False, False, True),    # a no builds nothing
    ("deny", None, False, True, False, False),   # deny never asks
    ("allow", None, False, False, True, False),  # batch and CI
    ("deny", True, False, False, True, False),   # --setup is the user's explicit yes
    ("allow", False, False, True, False, False),  # --no-setup wins too
])
def test_who_may_start_a_set_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, flag: bool | None,
                                 remembered: bool, answer: bool, expected: bool, asked: bool) -> None:
    from runner.config import load_settings
    from runner.env import store
    from runner.env.service import may_prepare

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SMOL_ENV_SETUP", setting)
    repo = write(tmp_path / "repo", {"requirements.txt": "six\n"})
    if remembered:
        store.remember(repo)
    questions: list[str] = []

    def ask(question: str) -> bool:
        questions.append(question)
        return answer

    assert may_prepare(repo, load_settings(repo), flag, ask, "requirements.txt") is expected
    assert bool(questions) is asked
    assert store.allowed(repo) is (remembered or (asked and answer))
    assert may_prepare(repo, load_settings(repo), None, None, "requirements.txt") is \
        (setting == "allow" or (setting == "ask" and store.allowed(repo)))  # nobody to ask: never asks


def test_the_set_up_gets_the_hosts_proxy_index_and_ca_and_the_image_never_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.config import load_settings
    from runner.env.build import HOST_CA, setup_environment

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")  # a host directory: invisible in there, not passed
    monkeypatch.delenv("UV_INDEX_URL", raising=False)
    monkeypatch.delenv("SMOL_ENV_WHEELHOUSE", raising=False)
    plan = plan_for(write(tmp_path / "repo", {"requirements.txt": "six\n"}))
    env = setup_environment(plan, load_settings(tmp_path), has_ca=True)
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128" and env["no_proxy"] == "localhost"
    assert env["UV_INDEX_URL"] == env["PIP_INDEX_URL"] == "https://mirror.example/simple"
    assert "UV_FIND_LINKS" not in env and "PIP_FIND_LINKS" not in env
    assert env["SSL_CERT_FILE"] == HOST_CA and env["UV_NATIVE_TLS"] == "1"
    assert not {"HTTPS_PROXY", "no_proxy", "UV_INDEX_URL", "SSL_CERT_FILE"} & set(plan.image_env)  # what is committed
    offline = setup_environment(plan, load_settings(tmp_path, smol_env_wheelhouse=str(tmp_path)), has_ca=False)
    assert offline["UV_NO_INDEX"] == "1" and offline["UV_FIND_LINKS"] == "/opt/smol/wheelhouse"
    assert "UV_INDEX_URL" not in offline and "SSL_CERT_FILE" not in offline


def test_the_agent_and_the_sandbox_cannot_reach_the_set_up_phase() -> None:
    """Only the CLI (the user's command) imports the set-up; the sandbox reads the key, never builds."""
    import ast

    runner = Path(__file__).resolve().parents[1] / "runner"
    for path in runner.rglob("*.py"):
        imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
                    and node.module} | {alias.name for node in ast.walk(ast.parse(path.read_text()))
                                        if isinstance(node, ast.Import) for alias in node.names}
        package = path.relative_to(runner).parts[0]
        if package in ("agent", "sandbox", "promote", "policy"):
            assert not {"runner.env.build", "runner.env.service", "runner.env.tools"} & imported, path
        if package == "env":
            assert not {"click", "runner.cli", "runner.agent"} & imported, path
