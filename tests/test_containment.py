"""What the agent does inside the sandbox cannot change what smol's own helpers report, cannot outlive its command,
cannot write outside its capped space, and cannot make copy mode fail; streamed output is as bounded as kept output.
All on the real engine and the real image."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.errors import SandboxError
from runner.sandbox import SandboxMode
from tests.conftest import chown_tree, tree_fingerprint

# Whatever imports this (as a module, a site hook or a .pth line) replaces the helper's output with a forgery.
FORGER = r'''
import os, sys
_argv = " ".join(sys.argv)
if "smol-diff" in _argv:
    os.write(1, b"diff --git a/FOR" + b"GED b/FOR" + b"GED\nnew file mode 100644\n")
    os._exit(0)
if sys.argv[:1] == ["-c"]:
    import io, tarfile as _t
    _buf = io.BytesIO()
    with _t.TarFile(fileobj=_buf, mode="w") as _a:
        _i = _t.TarInfo("src/app.py"); _i.size = 6; _a.addfile(_i, io.BytesIO(b"FOR" + b"GED"))
    os.write(1, _buf.getvalue())
    os._exit(0)
'''

PLANT = f"""
set -e
cat > /tmp/forger.py <<'PYEOF'
{FORGER}
PYEOF
site=$HOME/.local/lib/python3.11/site-packages
mkdir -p "$site" "$HOME/lib"
for target in tarfile.py sitecustomize.py usercustomize.py subprocess.py tempfile.py \
              "$HOME/sitecustomize.py" "$HOME/usercustomize.py" "$site/usercustomize.py" "$site/sitecustomize.py" \
              "$HOME/lib/tarfile.py" "$HOME/lib/sitecustomize.py"; do
    cp /tmp/forger.py "$target"
done
echo 'import sys; exec(open("/tmp/forger.py").read())' > "$site/evil.pth"
# git reads these when nothing stops it: global, XDG and repo config, attributes, excludes
cat > "$HOME/.gitconfig" <<'EOF'
[diff]
    noprefix = true
    mnemonicPrefix = true
[core]
    excludesFile = /home/sandbox/ignore-everything
    attributesFile = /home/sandbox/attributes
EOF
mkdir -p "$HOME/.config/git"
cp "$HOME/.gitconfig" "$HOME/.config/git/config"
echo '*' > "$HOME/.config/git/ignore"
echo '*' > "$HOME/ignore-everything"
echo '* text eol=crlf ident' > "$HOME/attributes"
git config --file .git/config core.excludesFile /home/sandbox/ignore-everything
git config --file .git/config core.attributesFile /home/sandbox/attributes
mkdir -p .git/info && echo '* text eol=crlf ident' > .git/info/attributes
# shells and ripgrep
for rc in .bashrc .bash_profile .profile .bash_login .bash_logout; do
    printf 'echo PWNED-%s; exit 3\\n' "$rc" > "$HOME/$rc"
done
printf -- '--glob=!*\\n--max-count=0\\n' > "$HOME/.ripgreprc"
echo '*' > "$HOME/.ignore"
"""


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _processes(docker_client: Any, sandbox: Any) -> list[list[str]]:
    """Every process in the sandbox container, as `docker top` shows it (UID resolved by the host)."""
    top = docker_client.api.top(sandbox.info.container_id, ps_args="-eo uid,pid,ppid,args")
    return [row for row in top["Processes"]]


def _sandbox_user_processes(docker_client: Any, sandbox: Any) -> list[list[str]]:
    return [row for row in _processes(docker_client, sandbox) if row[0] == str(sandbox.info.uid)]


# ---------------------------------------------------------------------------------------------- 1. helpers
@pytest.mark.parametrize("mode", ["overlay", "copy"])
def test_helpers_ignore_what_the_agent_plants(mode: str, make_repo: Callable[..., Path],
                                              open_sandbox: Callable[..., Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A stdlib-shadowing module at the repo root, site/user-customize hooks and a .pth in $HOME, git config and
    attributes in $HOME and .git, shell rc files and a ripgrep config: export_files, diff, read, write and
    list_files still report the true state. A user who passes PYTHONPATH/PYTHONSTARTUP into the sandbox does not
    change the helpers either."""
    repo = make_repo(owner=1000 if mode == "overlay" else None)
    # The repo's own attributes would rewrite bytes on their way into the patch if git applied them.
    (repo / ".gitattributes").write_text("*.txt text eol=lf ident\n")
    (repo / "crlf.txt").write_bytes(b"one\r\ntwo\r\n$Id$\r\n")
    if mode == "overlay":
        chown_tree(repo, 1000, 1000)
    monkeypatch.setenv("PYTHONPATH", "/home/sandbox/lib:/workspace")
    monkeypatch.setenv("PYTHONSTARTUP", "/tmp/forger.py")
    monkeypatch.setenv("PYTHONUSERBASE", "/home/sandbox/.local")
    sandbox = open_sandbox(repo, sandbox_mode=mode, sandbox_env_allowlist="PYTHONPATH,PYTHONSTARTUP,PYTHONUSERBASE")
    assert sandbox.info.mode.value == mode
    planted = sandbox.exec(PLANT)
    assert planted.exit_code == 0, planted.stderr
    # The plant works on ordinary Python in the sandbox: the agent's own commands see it.
    assert "FORGED" in sandbox.exec(["python3", "-c", "print(1)", "smol-diff"]).stdout
    change = sandbox.exec("printf 'def add(a, b):\\n    return a - b\\n' > src/app.py && "
                          "printf 'x\\r\\ny\\r\\n$Id$\\r\\n' > crlf.txt && echo brand-new > brand_new.py")
    assert change.exit_code == 0, change.stderr

    exported = sandbox.export_files(["src/app.py", "crlf.txt"])
    assert exported["src/app.py"].data == b"def add(a, b):\n    return a - b\n"
    assert exported["crlf.txt"].data == b"x\r\ny\r\n$Id$\r\n"
    original = sandbox.export_files(["src/app.py"], original=True)
    assert original["src/app.py"].data == b"def add(a, b):\n    return a + b\n"

    patch = sandbox.diff()
    assert b"FORGED" not in patch
    assert b"diff --git a/src/app.py b/src/app.py" in patch and b"+    return a - b" in patch
    assert b"brand_new.py" in patch, "the agent's excludes must not hide new files"
    assert sandbox.left_out["ignored"] == []
    copy = tmp_path / "applied"
    shutil.copytree(repo, copy, symlinks=True)
    subprocess.run(["git", "apply", "--binary", "-"], cwd=copy, input=patch, check=True, capture_output=True)
    # The patch carries the exact bytes on both sides (git apply would run the copy's own attributes again).
    old_id, new_id = _blob_id(b"one\r\ntwo\r\n$Id$\r\n"), _blob_id(b"x\r\ny\r\n$Id$\r\n")
    expected = f"index {old_id}..{new_id}"
    assert expected.encode() in patch, patch.decode(errors="replace")
    assert (copy / "brand_new.py").read_text() == "brand-new\n"

    assert sandbox.read("src/app.py") == b"def add(a, b):\n    return a - b\n"
    sandbox.write("written.txt", b"written\n")
    assert sandbox.read("written.txt") == b"written\n"
    listed = sandbox.list_files("*")
    assert "src/app.py" in listed and "written.txt" in listed and "brand_new.py" in listed
    assert not [name for name in listed if name.startswith(".git/")], "list_files never lists .git/"


# ---------------------------------------------------------------------------------------------- 2. survivors
def test_nothing_outlives_a_command_that_kills_its_wrapper(make_repo: Callable[..., Path],
                                                          open_sandbox: Callable[..., Any],
                                                          docker_client: Any) -> None:
    repo = make_repo()
    sandbox = open_sandbox(repo)
    expected = {row[1] for row in _processes(docker_client, sandbox)}  # docker-init and the container's sleep
    assert not _sandbox_user_processes(docker_client, sandbox)
    result = sandbox.exec("(while true; do echo x >> f; sleep 0.05; done) & kill -9 $PPID", timeout=20)
    assert not result.timed_out and result.duration_s < 10, result
    assert not any("memory limit (SANDBOX_MEMORY) was reached" in note for note in result.notes), result.notes
    assert any("not by the memory limit" in note for note in result.notes), result.notes
    time.sleep(1)
    assert _sandbox_user_processes(docker_client, sandbox) == []
    assert {row[1] for row in _processes(docker_client, sandbox)} == expected, "the container's own processes live"
    first = sandbox.diff()
    time.sleep(1)
    assert sandbox.diff() == first
    assert sandbox.exec(["true"]).ok


def test_the_wrapper_cannot_be_traced_or_inspected_by_the_command(make_repo: Callable[..., Path],
                                                                  open_sandbox: Callable[..., Any]) -> None:
    """Same uid, but the wrapper is not dumpable: its memory, environment and descriptors are out of reach."""
    sandbox = open_sandbox(make_repo())
    probe = sandbox.exec("cat /proc/$PPID/environ >/dev/null 2>&1 && echo environ-readable; "
                         "ls /proc/$PPID/fd >/dev/null 2>&1 && echo fds-listable; "
                         "cat /proc/self/environ >/dev/null && echo own-readable")
    assert probe.stdout == "own-readable\n", probe


def test_a_real_memory_kill_is_named_as_one(make_repo: Callable[..., Path], open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(make_repo(), sandbox_memory="384m")
    result = sandbox.exec("python3 -c 'x = []\nwhile True: x.append(bytearray(32 * 1024 * 1024))'", timeout=30)
    assert result.exit_code == 137 and not result.timed_out
    assert any("memory limit (SANDBOX_MEMORY) was reached" in note for note in result.notes), result.notes
    # A later kill from inside is not blamed on the memory limit.
    again = sandbox.exec("kill -9 $$")
    assert again.exit_code == 137
    assert not any("was reached" in note for note in again.notes), again.notes


def test_sweep_cost_is_paid_only_when_a_command_died_of_a_signal(make_repo: Callable[..., Path],
                                                                open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(make_repo())
    for _ in range(3):
        sandbox.exec(["true"])
    calls: list[list[str]] = []
    original = sandbox.runtime._exec_raw

    def spy(argv: list[str], **kwargs: Any) -> Any:
        calls.append(argv)
        return original(argv, **kwargs)

    sandbox.runtime._exec_raw = spy
    assert sandbox.exec(["true"]).ok and sandbox.exec("exit 3").exit_code == 3
    assert len(calls) == 2, "an ordinary exit costs no extra exec"
    assert sandbox.exec("kill -TERM $$").exit_code == 143
    assert len(calls) == 4, "a death by signal is followed by one sweep"


# ---------------------------------------------------------------------------------------------- 3. baseline
def test_copy_mode_baseline_is_read_only_and_every_writable_place_is_capped(make_repo: Callable[..., Path],
                                                                           open_sandbox: Callable[..., Any]) -> None:
    repo = make_repo(owner=None)
    (repo / "open").mkdir()
    (repo / "open" / "f.txt").write_text("world-writable dir\n")
    os.chmod(repo / "open", 0o777)
    os.chmod(repo / "open" / "f.txt", 0o666)
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo, sandbox_mode="copy", sandbox_disk="64m", sandbox_tmp_size="16m")
    assert sandbox.info.mode is SandboxMode.COPY
    for target in ("/sandbox/base/open/new.bin", "/sandbox/base/open/f.txt", "/sandbox/base/new.bin"):
        attempt = sandbox.exec(f"head -c 1000000 /dev/zero > {target}")
        assert attempt.exit_code != 0, target
    assert sandbox.exec("mkdir /sandbox/base/open/d").exit_code != 0
    assert sandbox.exec("chmod 777 /sandbox/base/open/f.txt").exit_code != 0
    # The workspace keeps the repo's own modes.
    modes = sandbox.exec("stat -c %a open open/f.txt")
    assert modes.stdout.split() == ["777", "666"], modes
    assert sandbox.diff() == b""

    _assert_every_writable_place_is_capped(sandbox, 64 * 1024**2)
    assert tree_fingerprint(repo) == before


def _assert_every_writable_place_is_capped(sandbox: Any, cap: int) -> None:
    """Every directory the sandbox user can create files in lies on a size-capped tmpfs (or the mqueue fs)."""
    audit = sandbox.exec(r"""
python3 - <<'EOF'
import os
mounts = {}
for line in open('/proc/self/mountinfo'):
    fields = line.split()
    sep = fields.index('-')
    mounts[fields[4]] = (fields[sep + 1], fields[5])
writable = set()
for point in sorted(mounts):
    if point.startswith(('/proc', '/sys')):
        continue
    for dirpath, dirs, files in os.walk(point):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in mounts]
        if os.access(dirpath, os.W_OK):
            writable.add(point)
for point in sorted(writable):
    st = os.statvfs(point)
    print(point, mounts[point][0], st.f_blocks * st.f_frsize)
EOF
""", output_limit=1 << 20)
    assert audit.exit_code == 0, audit.stderr
    seen = {}
    for line in audit.stdout.splitlines():
        point, fstype, size = line.split()
        seen[point] = (fstype, int(size))
    assert set(seen) <= {"/workspace", "/tmp", "/home/sandbox", "/dev/shm", "/dev/mqueue"}, seen
    for point, (fstype, size) in seen.items():
        # The overlay's size is its upper layer's: the tmpfs volume capped at SANDBOX_DISK.
        assert fstype in ("tmpfs", "mqueue") or (point, fstype) == ("/workspace", "overlay"), (point, fstype)
        if fstype != "mqueue":
            assert 0 < size <= cap, (point, size)


@pytest.mark.parametrize("mode", ["overlay", "copy"])
def test_every_writable_place_is_capped(mode: str, make_repo: Callable[..., Path],
                                        open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(make_repo(owner=1000 if mode == "overlay" else None), sandbox_mode=mode,
                           sandbox_disk="64m", sandbox_tmp_size="16m")
    assert sandbox.info.mode.value == mode
    _assert_every_writable_place_is_capped(sandbox, 64 * 1024**2)
    assert sandbox.exec("head -c 70000000 /dev/zero > big.bin").exit_code != 0, "SANDBOX_DISK caps the workspace"


# ---------------------------------------------------------------------------------------------- 4. escaping links
def test_copy_mode_copies_relative_links_that_leave_the_repo(make_repo: Callable[..., Path],
                                                            open_sandbox: Callable[..., Any]) -> None:
    repo = make_repo(owner=None)
    (repo / "up").symlink_to("..")
    (repo / "x").symlink_to("../../etc")
    (repo / "src" / "deep").symlink_to("../../../../..")
    (repo / "src" / "fine").symlink_to("../README.md")
    (repo / "abs").symlink_to("/etc/hostname")
    before = tree_fingerprint(repo)
    sandbox = open_sandbox(repo, sandbox_mode="copy")
    assert sandbox.info.mode is SandboxMode.COPY
    links = sandbox.exec("for l in up x src/deep src/fine abs; do printf '%s=%s\\n' $l \"$(readlink $l)\"; done; "
                         "readlink /sandbox/base/up /sandbox/base/src/deep")
    assert links.exit_code == 0, links.stderr
    assert links.stdout.splitlines() == ["up=..", "x=../../etc", "src/deep=../../../../..", "src/fine=../README.md",
                                         "abs=/etc/hostname", "..", "../../../../.."]
    assert sandbox.exec("stat -c %u /sandbox/base/up").stdout.strip() != str(sandbox.info.uid)
    assert sandbox.diff() == b""
    assert sandbox.exec("rm up && ln -s ../.. x2").ok
    patch = sandbox.diff()
    assert b"deleted file mode 120000" in patch and b"x2" in patch
    assert tree_fingerprint(repo) == before


def test_a_failed_copy_is_a_sandbox_error(make_repo: Callable[..., Path], open_sandbox: Callable[..., Any],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import docker.errors
    from docker.api.client import APIClient

    def refuse(self: Any, container: str, path: str, data: Any) -> bool:
        raise docker.errors.APIError("500 Server Error", explanation="invalid symlink \"/workspace/up\" -> \"..\"")

    monkeypatch.setattr(APIClient, "put_archive", refuse)
    with pytest.raises(SandboxError, match="copying the repo into the sandbox failed: invalid symlink"):
        open_sandbox(make_repo(owner=None), sandbox_mode="copy")


# ---------------------------------------------------------------------------------------------- 5. streaming
def test_streamed_output_is_capped_like_kept_output(make_repo: Callable[..., Path],
                                                    open_sandbox: Callable[..., Any]) -> None:
    limit = 64 * 1024
    sandbox = open_sandbox(make_repo(), sandbox_output_limit=limit)
    received: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    result = sandbox.exec("yes | head -c 100000000; echo done >&2",
                          on_output=lambda name, chunk: received[name].extend(chunk), timeout=120)
    assert result.exit_code == 0 and result.truncated
    assert result.stdout_bytes == 100_000_000
    shown = bytes(received["stdout"])
    assert len(shown) < limit + 200
    omitted = 100_000_000 - limit
    assert f"[... {omitted} bytes not shown ...]".encode() in shown
    head, _, tail = shown.partition(f"\n[... {omitted} bytes not shown ...]\n".encode())
    assert head == b"y\n" * (limit // 4) and len(tail) == limit // 2 and tail.endswith(b"y\n")
    assert bytes(received["stderr"]) == b"done\n"
    # Short output streams through untouched.
    received = {"stdout": bytearray(), "stderr": bytearray()}
    sandbox.exec("seq 1 1000", on_output=lambda name, chunk: received[name].extend(chunk))
    assert bytes(received["stdout"]) == b"".join(b"%d\n" % i for i in range(1, 1001))


def test_export_still_returns_links_and_exec_bits(make_repo: Callable[..., Path],
                                                 open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(make_repo())
    assert sandbox.exec("ln -s README.md l && chmod +x src/app.py").ok
    states = sandbox.export_files(["l", "src/app.py", "missing"])
    assert sorted(states) == ["l", "src/app.py"]
    assert states["l"].kind == "symlink" and states["l"].data == b"README.md"
    assert states["src/app.py"].executable
