"""Real projects, as a new user meets them: PyPI source distributions that ship their tests, each prepared by
`smol env build` (or `smol exec --setup`) with the real engine and the real registry (through this machine's
TLS-intercepting proxy), then their whole suite run through `smol exec`, with network off, and compared with a
host venv built by the same steps. The last test seeds a bug, lets the scripted model fix it, and checks that the
re-verification ran the project's real suite before the fix was promoted.

Three shapes: flask (uv.lock with PEP 735 groups), bleach (setup.py and a pinned requirements-dev.txt with
`-e .`), markdown-it-py (pyproject.toml extras `[testing]`); each has runtime dependencies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from runner.env.plan import VENV, plan_for
from runner.testcmd import parse_test_counts
from tests.conftest import REPO_OWNER, chown_tree, git
from tests.fake_ollama import FakeOllama, final, tool

SMOL = str(Path(sys.executable).with_name("smol"))
PROJECTS = {"flask": "3.1.3", "bleach": "6.4.0", "markdown-it-py": "4.3.0"}
SUITE = ["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
HOST_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
"""The host venv's interpreter: the same Debian python3 as the image's where the host has it (a fair comparison)."""


def smol(*args: str, env: dict[str, str] | None = None, timeout: float = 900,
         inside_may_fail: bool = False) -> subprocess.CompletedProcess[str]:
    """The real CLI; smol itself never answers with a traceback (a command inside the sandbox may)."""
    result = subprocess.run([SMOL, *args], env={**os.environ, "PHOENIX_ENABLED": "false", **(env or {})},
                            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if not inside_may_fail:
        assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="session")
def sdists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source distributions, downloaded once per session with the host's pip."""
    into = tmp_path_factory.mktemp("sdists")
    for name, version in PROJECTS.items():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
                        f"{name}=={version}", "-d", str(into)], check=True, timeout=600)
    return into


@pytest.fixture(scope="session")
def projects(sdists: Path, tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> dict[str, Path]:
    """Each sdist unpacked as a git repo owned by an ordinary user, as a developer's checkout would be."""
    base = tmp_path_factory.mktemp("projects")
    found = {}
    for name, version in PROJECTS.items():
        archive = next(sdists.glob(f"{name.replace('-', '_')}-{version}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(base, filter="data")
        repo = base / archive.name.removesuffix(".tar.gz")
        git(repo, "init", "-q")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"{name} {version} from its sdist")
        chown_tree(repo, REPO_OWNER, REPO_OWNER)
        found[name] = repo
    return found


def host_counts(repo: Path, tmp_path: Path) -> dict[str, int]:
    """The suite's counts in a host venv built by the same plan (same uv, same lockfile, same steps)."""
    from runner.env.tools import ensure_uv

    uv = ensure_uv(None, print)
    copy = tmp_path / "host" / repo.name
    shutil.copytree(repo, copy, symlinks=True)
    venv = tmp_path / "host-venv"
    script = plan_for(copy).user_script.replace(VENV, str(venv)).replace("/usr/bin/python3", HOST_PYTHON) \
        .replace("/tmp/smol-locked.txt", str(tmp_path / "locked.txt"))
    env = {**os.environ, "PATH": f"{uv.parent}:{venv}/bin:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv),
           "UV_NATIVE_TLS": "1", "UV_PYTHON_DOWNLOADS": "never", "UV_COMPILE_BYTECODE": "1"}
    subprocess.run(["bash", "-c", script], cwd=copy, env=env, check=True, capture_output=True, timeout=900)
    run = subprocess.run([str(venv / "bin" / "python"), *SUITE[1:]], cwd=copy, env=env, capture_output=True,
                         text=True, timeout=900)
    return parse_test_counts(run.stdout + run.stderr)


def sandbox_counts(repo: Path) -> tuple[dict[str, int], dict[str, Any]]:
    result = smol("exec", "--repo", str(repo), "--json", "--", *SUITE)
    payload = json.loads(result.stdout)
    return parse_test_counts(payload["stdout"] + payload["stderr"]), payload


@pytest.mark.parametrize("name", ["flask", "bleach"])
def test_env_build_then_the_whole_suite_matches_the_host(name: str, projects: dict[str, Path],
                                                         tmp_path: Path) -> None:
    repo = projects[name]
    built = smol("env", "build", "--repo", str(repo), "--json")
    assert built.returncode == 0, built.stderr
    first = json.loads(built.stdout)
    # Cached already when another clone of the same release was prepared on this engine (same inputs, same tag).
    assert first["tag"].startswith(f"smol-env:{repo.name}-") and first["detected"]
    again = json.loads(smol("env", "build", "--repo", str(repo), "--json").stdout)
    assert again == {**first, "cached": True, "seconds": again["seconds"]} and again["seconds"] < 5

    counts, payload = sandbox_counts(repo)
    assert payload["sandbox"]["image"] == first["tag"]  # the sandbox started from the environment
    assert payload["diff_bytes"] == 0  # the run left nothing in the repo view
    expected = host_counts(repo, tmp_path)
    print(f"{name}: sandbox {counts}, host {expected}")
    assert expected["passed"] > 100
    assert counts == expected


def test_opt_in_then_exec_setup_builds_with_progress(projects: dict[str, Path], tmp_path: Path) -> None:
    repo = projects["markdown-it-py"]
    assert smol("env", "rm", "--repo", str(repo)).returncode == 0  # prepared by an earlier session: start bare
    # Nobody to ask, nothing allowed: one line naming the command, the bare image, no set-up.
    bare = smol("exec", "--repo", str(repo), "--", "python3", "-c", "import markdown_it", inside_may_fail=True)
    assert bare.returncode != 0 and "ModuleNotFoundError" in bare.stderr
    hints = [line for line in bare.stderr.splitlines() if "smol env build" in line]
    assert len(hints) == 1 and "declares dependencies" in hints[0], bare.stderr
    assert "preparing the environment" not in bare.stderr
    # A repo's own settings can never turn it on.
    (repo / ".smol.toml").write_text('SMOL_ENV_SETUP = "allow"\n')
    try:
        refused = smol("exec", "--repo", str(repo), "--", "true")
        assert "preparing the environment" not in refused.stderr and "smol env build" in refused.stderr
    finally:
        (repo / ".smol.toml").unlink()
    # --setup is the user's yes: built with progress, then used.
    setup = smol("exec", "--setup", "--repo", str(repo), "--", "python3", "-c", "import markdown_it, mdurl")
    assert setup.returncode == 0, setup.stderr
    assert "preparing the environment smol-env:" in setup.stderr and "set-up: + uv pip install -e" in setup.stderr
    counts, payload = sandbox_counts(repo)
    assert payload["sandbox"]["image"].startswith("smol-env:")
    expected = host_counts(repo, tmp_path)
    print(f"markdown-it-py: sandbox {counts}, host {expected}")
    assert expected["passed"] > 100 and counts == expected


SEEDED = ("strip_comments=strip_comments,", "strip_comments=not strip_comments,")
"""bleach.clean() hands its Cleaner the opposite of what it was asked: comments kept when they should go."""


def test_a_seeded_bug_fixed_verified_by_the_real_suite_and_promoted(projects: dict[str, Path]) -> None:
    repo = projects["bleach"]
    source = repo / "bleach" / "__init__.py"
    assert SEEDED[0] in source.read_text()
    source.write_text(source.read_text().replace(SEEDED[0], SEEDED[1]))
    git(repo, "commit", "-qam", "seed a bug: comments are kept when they should be stripped")
    chown_tree(repo, REPO_OWNER, REPO_OWNER)
    assert smol("env", "build", "--repo", str(repo)).returncode == 0  # cached, or built when run alone

    script = [tool("run_tests"),
              tool("propose_patch", path="bleach/__init__.py", old_text="strip_comments=not strip_comments,",
                   new_text="strip_comments=strip_comments,"),
              tool("apply_patch", patch_id="p1"), tool("run_tests"), final("clean() inverted strip_comments")]
    with FakeOllama(script) as fake:
        result = smol("run", "Fix bleach.clean", "--repo", str(repo), "--json", "--promote", "auto-if-verified",
                      env={"MODEL_API_BASE": fake.url})
        asked = fake.requests
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    # The agent's first test run failed on the seeded bug: the suite ran for real in the agent's sandbox.
    first_run = json.dumps(asked[1]["messages"][-1])
    assert "failed" in first_run
    verification = json.loads(smol("runs", "show", summary["run_id"], "--json").stdout)["verification"]
    print(f"verification: {verification}")
    assert verification["status"] == "passed" and verification["passed"] > 400 and verification["failed"] == 0
    assert summary["promotion"]["outcome"] == "applied"
    assert SEEDED[0] in source.read_text()
    assert f"verification: passed ({verification['passed']} passed, 0 failed)" in result.stderr


AIR_GAPPED = {
    "pyproject.toml": '[project]\nname = "tinycalc"\nversion = "0.1"\ndescription = "tiny"\ndependencies = ["mdurl"]\n'
                      '[project.optional-dependencies]\ntest = ["pytest"]\n'
                      '[build-system]\nrequires = ["flit_core>=3.4"]\nbuild-backend = "flit_core.buildapi"\n',
    "tinycalc/__init__.py": ('"""A tiny project with a runtime dependency."""\n\nimport mdurl\n\n__version__ = "0.1"\n'
                             "\n\ndef add(a, b):\n    return a + b\n\n\n"
                             "def link(url):\n    return mdurl.encode(url)\n"),
    "tests/test_calc.py": "from tinycalc import add, link\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
                          "def test_link():\n    assert link('a b') == 'a%20b'\n",
    # The user's own set-up script: proves there is no network at all, then installs from the wheelhouse only.
    ".smol/setup.sh": ("set -eu\nif python3 -c \"import socket; socket.create_connection(('pypi.org', 443), 3)\" "
                       "2>/dev/null; then echo 'the network is reachable' >&2; exit 1; fi\n"
                       "uv pip install -e '.[test]'\n"),
}


def make_wheelhouse(where: Path) -> Path:
    """A local wheelhouse for the tinycalc project: its dependencies, its test tools and uv's own wheel."""
    from runner.env.key import UV_VERSION
    from runner.env.tools import _platform_tag

    wheelhouse = where / "wheels"
    for extra in ([], ["--platform", _platform_tag()]):
        wanted = [f"uv=={UV_VERSION}", "--no-deps"] if extra else ["mdurl", "pytest", "flit_core"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "--quiet", "-d",
                        str(wheelhouse), *extra, *wanted], check=True, timeout=600)
    return wheelhouse


def make_tinycalc(where: Path, files: dict[str, str] = AIR_GAPPED) -> Path:
    """The tinycalc project (a runtime dependency, a test extra) as a committed git repo owned by REPO_OWNER."""
    repo = where / "tinycalc"
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "tinycalc")
    chown_tree(repo, REPO_OWNER, REPO_OWNER)
    return repo


def test_air_gapped_wheelhouse_with_the_users_setup_script(tmp_path: Path, sandbox_image: str) -> None:
    from runner.env.key import UV_VERSION

    wheelhouse = make_wheelhouse(tmp_path)
    repo = make_tinycalc(tmp_path)
    env = {"SMOL_ENV_WHEELHOUSE": str(wheelhouse), "XDG_CACHE_HOME": str(tmp_path / "cache")}  # uv from it too
    smol("env", "rm", "--repo", str(repo))
    built = smol("env", "build", "--repo", str(repo), env=env)
    assert built.returncode == 0, built.stderr
    assert "air-gapped: wheelhouse only" in built.stderr and ".smol/setup.sh" in built.stderr
    assert (tmp_path / "cache" / "smol" / "uv" / UV_VERSION / "uv").is_file()
    counts, payload = sandbox_counts(repo)
    assert payload["exit_code"] == 0 and counts["passed"] == 2, payload["stdout"][-500:]
    # The editable install is what the sandbox imports: the code under /workspace, not a copy.
    where = smol("exec", "--repo", str(repo), "--", "python3", "-c", "import tinycalc; print(tinycalc.__file__)")
    assert where.stdout.strip() == "/workspace/tinycalc/__init__.py"


GO_PROJECT = {
    "go.mod": "module example.com/calc\n\ngo 1.19\n",
    "calc.go": "package calc\n\n// Add returns the sum of a and b.\nfunc Add(a, b int) int { return a + b }\n",
    "calc_test.go": ('package calc\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n\tif Add(1, 2) != 3 {\n'
                     '\t\tt.Fatal("1+2")\n\t}\n}\n\nfunc TestAddNegative(t *testing.T) {\n\tif Add(1, -2) != -1 {\n'
                     '\t\tt.Fatal("1-2")\n\t}\n}\n\nfunc TestSkipped(t *testing.T) { t.Skip("not here") }\n'),
}


def test_a_go_project_gets_its_toolchain_from_debian_and_its_tests_run(tmp_path: Path, sandbox_image: str) -> None:
    repo = tmp_path / "calc"
    repo.mkdir()
    for rel, text in GO_PROJECT.items():
        (repo / rel).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "calc")
    chown_tree(repo, REPO_OWNER, REPO_OWNER)
    bare = smol("exec", "--repo", str(repo), "--no-setup", "--", "go", "version")
    assert bare.returncode == 127  # the sandbox image has no Go
    built = smol("env", "build", "--repo", str(repo))
    assert built.returncode == 0, built.stderr
    assert "golang-go" in built.stderr or "is up to date" in built.stderr
    result = json.loads(smol("exec", "--repo", str(repo), "--json", "--", "go", "test", "-v", "./...").stdout)
    assert result["exit_code"] == 0, result["stdout"][-800:] + result["stderr"][-800:]
    assert parse_test_counts(result["stdout"]) == {"passed": 2, "failed": 0, "errors": 0, "skipped": 1}
    assert result["diff_bytes"] == 0  # the build cache went to /tmp, nothing into the repo view
    # A changed manifest is a new environment; `smol gc` removes the one nothing uses any more.
    old = json.loads(smol("env", "show", "--repo", str(repo), "--json").stdout)
    assert old["ready"] and old["tag"]
    (repo / "go.mod").write_text(GO_PROJECT["go.mod"] + "\n// a comment changes the inputs\n")
    new = json.loads(smol("env", "show", "--repo", str(repo), "--json").stdout)
    assert new["tag"] != old["tag"] and not new["ready"]
    swept = smol("gc")
    assert f"removed environment {old['tag']}" in swept.stdout, swept.stdout
    assert not any(env["tag"] == old["tag"] for env in
                   json.loads(smol("env", "show", "--all", "--json").stdout)["environments"])


def test_on_a_terminal_the_first_time_asks_and_a_yes_is_remembered(tmp_path: Path, sandbox_image: str) -> None:
    from tests.terminal import Terminal

    repo = tmp_path / "askme"
    repo.mkdir()
    (repo / "requirements.txt").write_text("# nothing yet: the environment is a venv with pytest\n")
    (repo / "test_one.py").write_text("def test_one():\n    assert True\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "askme")
    chown_tree(repo, REPO_OWNER, REPO_OWNER)
    smol("env", "rm", "--repo", str(repo))
    env = {**os.environ, "PHOENIX_ENABLED": "false", "XDG_STATE_HOME": str(tmp_path / "state")}
    question = "Prepare its environment now?"

    refused = Terminal("exec", "--repo", str(repo), "--", "true", env=env)
    refused.expect(question)
    refused.send("n\n")
    assert refused.wait() == 0
    assert "smol env build" in refused.text and "preparing the environment" not in refused.text

    accepted = Terminal("exec", "--repo", str(repo), "--", "python3", "-m", "pytest", "-q", env=env)
    accepted.expect(question)
    accepted.send("y\n")
    assert accepted.wait() == 0, accepted.text[-2000:]
    assert "preparing the environment smol-env:askme-" in accepted.text and "1 passed" in accepted.text

    consents = json.loads((tmp_path / "state" / "smol" / "env-consent.json").read_text())
    assert consents == {str(repo.resolve()): "allow"}  # the yes is remembered for this repo only
    again = Terminal("exec", "--repo", str(repo), "--", "true", env=env)
    assert again.wait() == 0
    assert question not in again.text and "preparing the environment" not in again.text  # built: nothing to ask
