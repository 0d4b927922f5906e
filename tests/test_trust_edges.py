"""Edges of the trust boundary that the main suites left untested (found by mutation testing, see MUTATION.md):
how the repo is packed into the sandbox (the read-only baseline, links that leave the tree), how an export is read
back, the path check on every tool argument and the terminal escaping of raw bytes. No Docker: the tar streams
are built from real files under tmp_path and read back with tarfile, as the engine would receive them."""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import stat
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from runner.errors import SandboxPathError
from runner.promote.guard import guard
from runner.promote.paths import is_dot_file, touches_dotgit
from runner.promote.runscode import runs_code_reason
from runner.sandbox.base import FileState, normalize_path
from runner.sandbox.runtime import parse_left_out
from runner.sandbox.tarstate import BASE_DIR, leaves_tree, overlay_layout, read_file_states, write_tree_archives
from runner.textsafe import has_unsafe_name_chars, one_line, sanitize_for_terminal
from tests.test_guard import added, refused_paths, symlink


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
        return {member.name: member for member in tar}


def pack(repo: Path, *, uid: int = 1234, gid: int = 2345, base_owner: int = 0) -> tuple[
        dict[str, tarfile.TarInfo], dict[str, tarfile.TarInfo], int, list[tuple[str, bytes]], bytes]:
    working, baseline = io.BytesIO(), io.BytesIO()
    total, outside = write_tree_archives(repo, working, baseline, uid, gid, base_owner=base_owner)
    return members(working.getvalue()), members(baseline.getvalue()), total, outside, baseline.getvalue()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "src" / "app.py").write_bytes(b"print('hi')\n")
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o4775)  # setuid + group-writable: neither may reach the baseline
    (root / "secret").write_bytes(b"s3cret")
    os.chmod(root / "secret", 0o600)
    os.chmod(root / "src" / "deep", 0o777)
    os.symlink("app.py", root / "src" / "inside")  # stays in the tree
    os.symlink("../../..", root / "src" / "deep" / "up")  # leaves it
    (root / "src" / "deep" / "z.txt").write_bytes(b"after the link")  # packed all the same
    (root / "private").mkdir(mode=0o700)  # the sandbox user must still be able to enter it in the baseline
    (root / "private" / "x").write_bytes(b"x")
    os.symlink("/etc/passwd", root / "abs")  # absolute: the engine extracts it as a dangling link, never follows
    os.link(root / "src" / "app.py", root / "hard")
    os.mkfifo(root / "fifo")
    return root


def test_the_baseline_is_read_only_for_the_sandbox_user_and_drops_setuid(repo: Path) -> None:
    working, baseline = io.BytesIO(), io.BytesIO()
    write_tree_archives(repo, working, baseline, 1234, 2345)  # root owns the baseline unless told otherwise
    base = members(baseline.getvalue())
    top = base[BASE_DIR]
    assert top.isdir() and (top.uid, top.gid, top.mode) == (0, 0, 0o755)
    assert set(base) >= {f"{BASE_DIR}/src/app.py", f"{BASE_DIR}/run.sh", f"{BASE_DIR}/secret", f"{BASE_DIR}/src/deep"}
    for name, member in base.items():
        assert name == BASE_DIR or name.startswith(f"{BASE_DIR}/")
        assert (member.uid, member.gid) == (0, 0), name
        assert member.uname == member.gname == "", name  # a name would let the engine map it to another owner
        if not member.issym():
            assert member.mode & 0o7022 == 0, f"{name}: {member.mode:o} is writable by the sandbox user or setuid"
    assert base[f"{BASE_DIR}/run.sh"].mode == 0o755  # git reads the owner's exec bit: kept
    assert base[f"{BASE_DIR}/secret"].mode == 0o644  # readable by the sandbox user (it is the baseline)
    assert base[f"{BASE_DIR}/src/deep"].mode == base[f"{BASE_DIR}/private"].mode == 0o755
    assert base[f"{BASE_DIR}/src/app.py"].mode == 0o644


def test_the_workspace_belongs_to_the_sandbox_user(repo: Path) -> None:
    work, _, _, _, _ = pack(repo, uid=1234, gid=2345, base_owner=7)
    assert "src/app.py" in work and "src/deep" in work and not any(n.startswith(BASE_DIR + "/") for n in work)
    for name, member in work.items():
        assert (member.uid, member.gid, member.uname, member.gname) == (1234, 2345, "", ""), name
    assert work["secret"].mode == 0o600  # the sandbox user's own copy keeps the file's mode


def test_links_that_leave_the_tree_are_handed_back_not_packed(repo: Path) -> None:
    work, base, _, outside, _ = pack(repo)
    assert outside == [("src/deep/up", b"../../..")]
    assert "src/deep/up" not in work and f"{BASE_DIR}/src/deep/up" not in base
    assert "src/deep/z.txt" in work and f"{BASE_DIR}/src/deep/z.txt" in base
    assert work["src/inside"].issym() and work["src/inside"].linkname == "app.py"
    assert base[f"{BASE_DIR}/src/inside"].linkname == "app.py"  # relative: resolves inside the baseline too
    assert work["abs"].linkname == "/etc/passwd"


def test_hard_links_point_inside_the_baseline(repo: Path) -> None:
    work, base, _, _, _ = pack(repo)
    linked = [name for name, member in work.items() if member.islnk()]
    assert len(linked) == 1
    target = work[linked[0]].linkname
    assert base[f"{BASE_DIR}/{linked[0]}"].linkname == f"{BASE_DIR}/{target}"


def test_fifos_and_sockets_are_not_packed_and_sizes_add_up(repo: Path) -> None:
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(repo / "sock"))
        work, base, total, _, raw = pack(repo)
    finally:
        server.close()
    assert "fifo" not in work and "sock" not in work and f"{BASE_DIR}/fifo" not in base
    sizes = sum(len(p.read_bytes()) for p in repo.rglob("*") if p.is_file() and not p.is_symlink()
                and stat.S_ISREG(p.lstat().st_mode) and p.name != "hard")
    assert total == sizes  # a hard link's content is packed (and counted) once
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        handle = tar.extractfile(f"{BASE_DIR}/secret")
        assert handle is not None and handle.read() == b"s3cret"


@pytest.mark.parametrize("name,link,leaves", [
    ("up", "..", True),
    ("a/up", "../..", True),
    ("a/b/l", "../../x", False),
    ("a/b/l", "../../../x", True),
    ("l", "../x", True),
    ("a/l", "./../../x", True),
    ("l", "..x", False),  # a name that starts with two dots is an ordinary name
    ("l", "a/../..", True),
    ("l", "/etc/passwd", False),  # absolute: not the engine's concern (never followed on the host)
    ("l", ".", False),
])
def test_leaves_tree_follows_the_engines_rule(name: str, link: str, leaves: bool) -> None:
    assert leaves_tree(name, link) is leaves


def test_overlay_layout_keeps_the_repo_path_out_of_mount_options(tmp_path: Path) -> None:
    root = tmp_path / "a,b:c d"
    root.mkdir(mode=0o750)
    entries = members(overlay_layout(str(root), os.stat(root), 1234, 2345))
    assert set(entries) == {"upper", "work", "lower"}
    assert entries["upper"].isdir() and entries["upper"].mode == stat.S_IMODE(os.stat(root).st_mode)
    assert entries["work"].isdir() and entries["work"].mode == 0o700
    for name in ("upper", "work"):
        assert (entries[name].uid, entries[name].gid) == (1234, 2345)
        assert entries[name].mtime == int(os.stat(root).st_mtime)
    assert entries["lower"].issym() and entries["lower"].linkname == str(root)


def export(entries: list[tuple[str, bytes | str, int]]) -> bytes:
    """An export tar as the sandbox's EXPORT_SCRIPT writes it: (name, content or link target, mode)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        directory = tarfile.TarInfo("dir")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
    return buffer.getvalue()


def test_an_export_is_read_in_memory_with_its_exec_bits_and_links() -> None:
    raw_name = os.fsdecode(b"caf\xe9.txt")  # not UTF-8: kept byte for byte through surrogateescape
    states = read_file_states(export([
        ("tool", b"#!/bin/sh\n", 0o755), ("only-group-x", b"x", 0o654), ("plain", b"", 0o644),
        ("others-x", b"y", 0o645),
        ("link", "../../etc/passwd", 0o777), (raw_name, b"\xff", 0o600), ("odd-link", os.fsdecode(b"t\xff"), 0o777),
    ]))
    assert states == {
        "tool": FileState("file", b"#!/bin/sh\n", True),
        "only-group-x": FileState("file", b"x", False),  # git (and so the review) only reads the owner's bit
        "others-x": FileState("file", b"y", False),
        "plain": FileState("file", b"", False),
        "link": FileState("symlink", b"../../etc/passwd"),
        raw_name: FileState("file", b"\xff", False),
        "odd-link": FileState("symlink", b"t\xff"),
    }


def test_a_compressed_export_is_refused_not_inflated() -> None:
    # The export comes from the sandbox, which the agent controls: a gzip stream there could be a decompression
    # bomb inflated in smol's own memory. The export script never compresses, so only a plain tar is read.
    import gzip

    with pytest.raises(tarfile.ReadError):
        read_file_states(gzip.compress(export([("big", b"\0" * 100_000, 0o644)])))


def test_what_the_diff_left_out_is_parsed_and_anything_else_ignored() -> None:
    # The report comes from inside the sandbox: names may hold tabs, and garbage must not crash the host side.
    report = (b"ignored\tbuild/out.o\0special\tfifo\0git\t.GIT/config\0more\tignored\t12\0"
              b"bogus\tx\0git\t\0ignored\0special\tcaf\xe9\0\xff\xfe\tjunk\0special\ta\tb\0\0")
    assert parse_left_out(report) == {"ignored": ["build/out.o"],
                                      "special": ["fifo", os.fsdecode(b"caf\xe9"), "a\tb"], "git": [".GIT/config"]}
    assert parse_left_out(b"") == {"ignored": [], "special": [], "git": []}


@pytest.mark.parametrize("path", ["/etc/passwd", "~/.ssh/id_rsa", "~root/x", "..", "../x", "a/../../x",
                                  "a/b/../../../x", "a\x00b", "../"])
def test_tool_paths_that_leave_the_repository_are_refused(path: str) -> None:
    with pytest.raises(SandboxPathError):
        normalize_path(path)


@pytest.mark.parametrize("path,normal", [("..foo", "..foo"), ("a/..b", "a/..b"), ("a/b/..", "a"), ("a/..", "."),
                                         ("./x/./y/", "x/y"), ("x~", "x~")])
def test_tool_paths_inside_the_repository_are_normalised(path: str, normal: str) -> None:
    assert normalize_path(path) == normal


def test_a_path_that_is_not_text_names_the_root_and_the_refusals_say_why() -> None:
    assert normalize_path(None) == "."  # type: ignore[arg-type]  # the tools pass what the model sent
    with pytest.raises(SandboxPathError, match="NUL"):
        normalize_path("a\x00")
    with pytest.raises(SandboxPathError, match="absolute"):
        normalize_path("/x")
    with pytest.raises(SandboxPathError, match="leaves the repository"):
        normalize_path("../x")


def test_raw_bytes_of_a_non_utf8_name_are_shown_as_the_bytes() -> None:
    # os.fsdecode turns the bytes 0x80..0xff of a non-UTF-8 name into lone surrogates U+DC80..U+DCFF.
    name = os.fsdecode(b"a\x80b\xffc\x9b")
    assert one_line(name) == "a\\x80b\\xffc\\x9b"
    assert not has_unsafe_name_chars(name)  # a display matter, not deception


def test_lone_surrogates_that_are_not_raw_bytes_are_escaped_as_code_points() -> None:
    # JSON from a model can carry any lone surrogate; printing one would raise, so it is escaped as itself.
    assert sanitize_for_terminal("x\ud800\udc7f\udd00\udfff") == "x\\ud800\\udc7f\\udd00\\udfff"
    assert not has_unsafe_name_chars("\ud800") and not has_unsafe_name_chars("\udfff")
    assert has_unsafe_name_chars("a\u202eb") and has_unsafe_name_chars("a\nb")
    assert sanitize_for_terminal("\u0100\u00ff\x9f") == "\u0100\u00ff\\x9f"


# --------------------------------------------------------------------------------------------------------------
# Rarer spellings of .git, .gitmodules and .gitattributes (git's t0060 vectors, plus the stricter visual rule)
# --------------------------------------------------------------------------------------------------------------

GITMODULES_SPELLINGS = [
    ".gitmodules", ".git\u200cmodules", ".Gitmodules", ".gitmoduleS", ".gitmodules ", ".gitmodules.", ".gitmodules  ",
    ".gitmodules. ", ".gitmodules .", ".gitmodules..", ".gitmodules . ", ".gitmodules  .", ".Gitmodules .",
    "GITMOD~1", "gitmod~1", "GITMOD~2", "gitmod~3", "GITMOD~4", "GITMOD~1 ", "gitmod~2.", "GITMOD~3  ",
    "gitmod~4. ", "GITMOD~1 .", "gitmod~4 . ", "GI7EBA~1", "gi7eba~9", "GI7EB~10", "GI7EB~11", "GI7EB~99",
    "GI7E~100", "GI7E~101", "GI7E~999", "~1000000", "~9999999", ".gitmodules:$DATA", "gitmod~4 . :$DATA",
    ".g\u200bitmodules", ".gitmodules\u2060.",
]
NOT_GITMODULES = [
    ".gitmodules x", ".gitmodules .x", " .gitmodules", "..gitmodules", "gitmodules", ".gitmodule", ".gitmodules x ",
    "GI7EBA~", "GI7EBA~0", "GI7EBA~~1", "GI7EBA~X", "Gx7EBA~1", "GI7EBX~1", "GI7EB~1", "GI7EB~01", "GI7EB~1X",
    ".gitmodules,:$DATA", "GITMOD~5", "GITMOD~1x", "gitmod~1 x", "GI7EB~1:$DATA", "xgitmodules", "GI7EBA~10",
    "~100000", "~1000000x", ".gitmodulesx.", "x.gitmodules", ".gitmodulesX", "gi7ebaxy", "GI7EBAXX", "gitmodxx",
]


@pytest.mark.parametrize("name", GITMODULES_SPELLINGS)
def test_every_spelling_of_gitmodules_is_flagged(name: str) -> None:
    # A submodule file under another name that NTFS or HFS+ folds back to .gitmodules (CVE-2018-11235 and its
    # NTFS follow-ups) must still need an explicit yes, in the root and in any directory.
    assert is_dot_file(name, "gitmodules", "gi7eba"), name
    for path in (name, f"sub/{name}"):
        # `~1000000` is also a short name .gitattributes may get: flagged either way
        assert re.search("submodule|attributes", runs_code_reason(path) or ""), path


@pytest.mark.parametrize("name", NOT_GITMODULES)
def test_names_that_only_resemble_gitmodules_are_not(name: str) -> None:
    assert not is_dot_file(name, "gitmodules", "gi7eba"), name


@pytest.mark.parametrize("name", [".gitattributes", ".GITATTRIBUTES. ", ".gitattributes:$DATA", "GITATT~1",
                                  "gitatt~4 .", "GI7D29~1", "gi7d29~9", "GI7D2~10", ".g\u200bitattributes"])
def test_every_spelling_of_gitattributes_is_flagged(name: str) -> None:
    assert "attributes" in (runs_code_reason(f"a/{name}") or ""), name


@pytest.mark.parametrize("path", [
    "git~1::$INDEX_ALLOCATION/config",  # the 8.3 short name of .git with an NTFS stream
    "GIT~1:$DATA/hooks/x", ".g\u200bit/config",  # a zero-width space displays as nothing
    ".g\u200bit./hooks/x", ".git\u2060:x:$DATA/config", ".g\u200bit:x:$DATA/HEAD", "a/.gi\u00adt/config",
    "\u200b.GIT. /x", "GIT~12/config", "git~1. /x",
])
def test_rarer_spellings_of_dot_git_are_refused(path: str) -> None:
    assert touches_dotgit(path), path


@pytest.mark.parametrize("path", ["git~1x/config", ".git~1/x", "a.git/x", ".gitx/y", "x/.git-crypt/k", ".g it/x",
                                  "git~/x", ".gi/t", ".git\ue000/x", ".gitX/y",
                                  "git~1X/y"])
def test_names_near_dot_git_are_left_alone(path: str) -> None:
    assert not touches_dotgit(path), path


@pytest.mark.parametrize("path", ["\\\\server\\share\\x", "\\x", "c:/x", "C:\\x", "z:\\y"])
def test_windows_absolute_paths_in_a_patch_are_refused(tmp_path: Path, path: str) -> None:
    # A checkout on Windows (or a tool that treats `\\` as a separator) would write these outside the repository.
    report = guard(added(path), tmp_path)
    assert refused_paths(report, "path") == {path}, report.refused


@pytest.mark.parametrize("path", [".github/actions/setup/action.yml", "sub/.github/workflows/x.yml",
                                  "pkg/.husky/pre-commit", "tools/.githooks/pre-push", "a/b/.husky/_/h"])
def test_hooks_and_ci_in_nested_directories_are_flagged(path: str) -> None:
    # A monorepo's package can carry its own hooks and CI: depth does not make them harmless.
    assert runs_code_reason(path) is not None, path


@pytest.mark.parametrize("path", ["docs/workflows/guide.md", "src/actions/store.py", "github/workflows.md",
                                  "husky/notes.md", ".husky", "docs/githooks.md"])
def test_ordinary_files_named_like_ci_or_hooks_are_not_flagged(path: str) -> None:
    # Over-flagging costs a question every time: only the places tools really read count.
    assert runs_code_reason(path) is None, path


# --------------------------------------------------------------------------------------------------------------
# The guard's symlink-chain resolution: links that already exist in the tree, `.`/`//` segments, long chains
# --------------------------------------------------------------------------------------------------------------


def _tree(tmp_path: Path, links: dict[str, str], dirs: tuple[str, ...] = (), files: tuple[str, ...] = ()) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in dirs:
        (repo / name).mkdir(parents=True, exist_ok=True)
    for name in files:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x\n")
    for name, target in links.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, repo / name)
    return repo


@pytest.mark.parametrize("target", ["a/l/./..", "a/l//..", "a/l/.//./../x", "d/up/..", "d/e/l2"])
def test_a_new_link_that_climbs_out_through_a_link_already_in_the_tree_is_refused(tmp_path: Path,
                                                                                   target: str) -> None:
    # Lexically each target stays inside (`a/l/./..` is `a`), but `a/l` already points at the repository root
    # and `d/e/l2` at `../..`: the kernel climbs out of the repository from there. `.` and empty segments must
    # not be mistaken for directories that a `..` could climb out of.
    repo = _tree(tmp_path, {"a/l": "..", "d/up": "../..", "d/e/l2": "../../.."}, dirs=("a", "d/e"))
    report = guard(symlink("x", target), repo)
    assert refused_paths(report, "symlink") == {"x"}, report.refused
    assert "outside the repository" in report.refused[0].reason


def test_a_new_link_through_a_link_the_patch_nests_in_a_directory_is_followed(tmp_path: Path) -> None:
    repo = _tree(tmp_path, {}, dirs=("d",))
    report = guard(symlink("d/up", "..") + symlink("x", "d/up/.."), repo)
    assert refused_paths(report, "symlink") == {"x"}


def test_a_link_the_patch_turns_into_a_file_is_no_longer_followed(tmp_path: Path) -> None:
    # `l -> ..` becomes a regular file in the same patch: afterwards `l/..` is not a way out (ENOTDIR), so a new
    # link through it is not refused for a link that will no longer exist.
    repo = _tree(tmp_path, {"l": ".."})
    deletion = (b"diff --git a/l b/l\ndeleted file mode 120000\nindex " + b"e" * 40 + b".." + b"0" * 40 +
                b"\n--- a/l\n+++ /dev/null\n@@ -1 +0,0 @@\n-..\n\\ No newline at end of file\n")
    report = guard(deletion + added("l", "now a file\n") + symlink("x", "l/.."), repo)
    assert refused_paths(report, "symlink") == set(), report.refused


@pytest.mark.parametrize("length,refused", [(40, False), (41, True)])
def test_a_chain_as_long_as_the_kernel_follows_is_allowed_and_one_longer_is_a_loop(
        tmp_path: Path, length: int, refused: bool) -> None:
    # Linux follows at most 40 links in one lookup (MAXSYMLINKS); a longer chain fails with ELOOP.
    links = {f"c{i}": f"c{i + 1}" for i in range(1, length)} | {f"c{length}": "target.txt"}
    repo = _tree(tmp_path, links, files=("target.txt",))
    report = guard(symlink("new", "c1"), repo)
    assert (not report.ok) is refused, report.refused
    if refused:
        assert "loop" in report.refused[0].reason


def test_a_pure_rename_of_a_real_file_takes_its_mode_from_the_tree(tmp_path: Path) -> None:
    # git prints a 100% rename without modes; the guard reads the source's mode from the tree (never the target).
    repo = _tree(tmp_path, {}, files=("old.py",))
    os.chmod(repo / "old.py", 0o755)
    rename = b"diff --git a/old.py b/new.py\nsimilarity index 100%\nrename from old.py\nrename to new.py\n"
    report = guard(rename, repo)
    assert report.ok and refused_paths(report) == set(), report.refused
    assert [(c.kind, c.old_path, c.new_path) for c in report.changes] == [("renamed", "old.py", "new.py")]


@pytest.mark.parametrize("target", ["l/../..", "l/../../y"])
def test_a_target_that_climbs_out_lexically_is_refused_whatever_the_links_on_the_way(tmp_path: Path,
                                                                                     target: str) -> None:
    # Today `l` points three directories deep, so the kernel would stay inside; but `l` is the user's to
    # retarget later, and then the new link would climb out. Containment must hold without trusting other links.
    repo = _tree(tmp_path, {"l": "a/b/c"}, dirs=("a/b/c",))
    report = guard(symlink("x", target), repo)
    assert refused_paths(report, "symlink") == {"x"}
    assert "points outside the repository" in report.refused[0].reason and target in report.refused[0].reason


def test_a_chain_through_an_absolute_link_in_the_tree_is_refused_and_named(tmp_path: Path) -> None:
    repo = _tree(tmp_path, {"etc": "/etc"})
    report = guard(symlink("x", "etc/passwd"), repo)
    assert refused_paths(report, "symlink") == {"x"}
    assert "etc" in report.refused[0].reason and "/etc" in report.refused[0].reason  # the reviewer sees both


def test_a_chain_into_a_nested_repositorys_git_dir_is_refused(tmp_path: Path) -> None:
    repo = _tree(tmp_path, {"d/g2": "../sub/.git"}, dirs=("d", "sub/.git"))
    report = guard(symlink("x", "d/g2/config"), repo)
    assert refused_paths(report, "symlink") == {"x"}
    assert "resolves into .git" in report.refused[0].reason


@pytest.mark.parametrize("target,why", [
    ("a\nb", "multi-line"), ("\\\\server\\share\\x", "absolute"), ("\\x", "absolute"), ("C:\\Windows", "absolute"),
    ("c:/x", "absolute"), ("Z:/x", "absolute"),
])
def test_link_targets_that_are_not_plain_relative_paths_are_refused(tmp_path: Path, target: str, why: str) -> None:
    report = guard(symlink("l", target), tmp_path)
    assert refused_paths(report, "symlink") == {"l"}, report.refused
    assert why in report.refused[0].reason


# --------------------------------------------------------------------------------------------------------------
# Every finding says where and why, and nothing is cut short
# --------------------------------------------------------------------------------------------------------------


def _rename(old: str, new: str) -> bytes:
    return f"diff --git a/{old} b/{new}\nsimilarity index 100%\nrename from {old}\nrename to {new}\n".encode()


def test_every_finding_names_its_path_and_says_why(tmp_path: Path) -> None:
    from tests.test_guard import modified

    repo = _tree(tmp_path, {"lnk": "real", "cfg": "real/x"}, dirs=("real",), files=("real/x",))
    patch = (added("../x") + added(".git/config") + added("a\x1bb") + added("m", mode="100664")
             + added("lnk/sub/x") + added("cfg") + symlink("a/b", "../c") + added("a/b/x") + modified("Makefile"))
    report = guard(patch, repo, max_bytes=10, max_files=2)
    expected_refused = {("../x", "path"), (".git/config", "git dir"), ("m", "mode"), ("lnk/sub/x", "symlink"),
                        ("cfg", "symlink"), ("a/b/x", "symlink")}
    assert {(f.path, f.category) for f in report.refused} == expected_refused
    assert {("a\x1bb", "name"), ("Makefile", "runs code"), ("", "size")} <= {(f.path, f.category)
                                                                           for f in report.flagged}
    assert all(f.reason.strip() for f in report.refused + report.flagged)
    through = {f.path: f.reason for f in report.refused if f.category == "symlink"}
    assert through["lnk/sub/x"].startswith("written through lnk,")  # the link itself, not a path below it
    assert "a/b" in through["a/b/x"]
    assert [f.reason for f in report.flagged if f.category == "size"] == [
        f"the patch is {len(patch)} bytes, over the 10-byte limit: approve it explicitly",
        "the patch changes 9 files, over the 2-file limit: approve it explicitly"]


def test_a_patch_that_cannot_be_read_is_one_refusal_that_says_why(tmp_path: Path) -> None:
    report = guard(b"diff --git a/x b/x\n@@ garbage", tmp_path)
    assert [(f.path, f.category) for f in report.refused] == [("", "parse")] and report.refused[0].reason.strip()
    assert report.changes == []


def test_both_sides_of_a_rename_are_checked_and_reported(tmp_path: Path) -> None:
    # Nothing is cut short: a bad source does not hide what is wrong (or needs a yes) on the destination.
    repo = _tree(tmp_path, {"lnk": "real"}, dirs=("real",), files=("real/a",))
    report = guard(_rename("../x", ".git/hooks/post-checkout") + _rename("lnk/a", "Makefile"), repo)
    assert {("../x", "path"), (".git/hooks/post-checkout", "git dir"), ("lnk/a", "symlink")} <= {
        (f.path, f.category) for f in report.refused}
    assert ("Makefile", "runs code") in {(f.path, f.category) for f in report.flagged}


def test_a_copy_does_not_consume_its_source_but_a_rename_does(tmp_path: Path) -> None:
    from tests.test_guard import modified

    repo = _tree(tmp_path, {}, files=("a", "c"))
    copy = b"diff --git a/a b/b\nsimilarity index 100%\ncopy from a\ncopy to b\n"
    assert guard(copy + modified("a"), repo).ok
    twice = guard(_rename("c", "d") + modified("c"), repo)
    assert ("c", "path") in {(f.path, f.category) for f in twice.refused}


@pytest.mark.parametrize("target", ["", "a\x00b"])
def test_an_empty_or_nul_link_target_is_refused(tmp_path: Path, target: str) -> None:
    report = guard(symlink("l", target), tmp_path)
    assert not report.ok


@pytest.mark.parametrize("target", ["/etc/passwd", ".git/config", "..\\..\\x", "sub/../.git"])
def test_a_refused_link_target_is_shown_to_the_reviewer(tmp_path: Path, target: str) -> None:
    report = guard(symlink("l", target), tmp_path)
    assert [f.path for f in report.refused] == ["l"]
    assert one_line(target) in report.refused[0].reason


def test_the_summary_says_what_kind_of_file_changed() -> None:
    from runner.promote.guard import FileChange, describe

    assert describe(FileChange("l", None, "deleted", "120000", None)) == "deleted     l (symlink)"
    assert describe(FileChange("m", "m", "modified", "160000", "160000")) == "modified    m (submodule)"
    assert describe(FileChange("b", "b", "modified", "100644", "100644", binary=True)) == "modified    b (binary)"
    assert describe(FileChange(None, "l", "added", None, "120000")) == "added       l (symlink -> ?)"
    assert describe(FileChange("p", "p", "modified", "100644", "100644")) == "modified    p"


@pytest.mark.parametrize("path", [
    "evil.pth", "lib/site-packages/zzz.pth",  # a .pth line starting with `import` runs at every interpreter start-up
    "compose.yaml", "deploy/docker-compose.prod.yaml", "docker-compose.yml",
    "pytest.ini", "sub/.pytest.ini", "jest.config.ts", "web/vitest.config.mjs", "pytest/__init__.py",
    ".github/copilot-instructions.md", "pkg/.github/copilot-instructions.md",
])
def test_files_that_run_code_at_start_up_or_steer_the_runner_are_flagged(path: str) -> None:
    assert runs_code_reason(path) is not None, path


# --------------------------------------------------------------------------------------------------------------
# GIT binary patch: every base85 line is checked and the hunk must inflate to exactly its declared size
# --------------------------------------------------------------------------------------------------------------

def _length_char(n: int) -> bytes:
    return bytes([ord("A") + n - 1]) if n <= 26 else bytes([ord("a") + n - 27])


def binary_hunk(payload: bytes, *, size: int | None = None, kind: str = "literal",
                compressed: bytes | None = None) -> bytes:
    """One hunk the way git writes it: `literal N`, then lines of up to 52 bytes of zlib data, each a length
    character (A-Z 1-26, a-z 27-52) and base85, then a blank line."""
    data = zlib.compress(payload) if compressed is None else compressed
    lines = [f"{kind} {len(payload) if size is None else size}".encode()]
    for start in range(0, len(data), 52):
        chunk = data[start:start + 52]
        lines.append(_length_char(len(chunk)) + base64.b85encode(chunk + b"\0" * (-len(chunk) % 4)))
    return b"\n".join(lines) + b"\n\n"


def binary_patch(path: str, hunk: bytes, *, mode: str = "100644", reverse: bytes | None = None) -> bytes:
    return (f"diff --git a/{path} b/{path}\nnew file mode {mode}\nindex 0000000..5087cdc\nGIT binary patch\n".encode()
            + hunk + (binary_hunk(b"") if reverse is None else reverse))


def test_a_binary_patch_git_wrote_is_read_and_flagged(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 3 + os.urandom(500))  # several lines, every length char
    (repo / "one.bin").write_bytes(b"\0")
    subprocess.run([*git, "add", "-A"], check=True)
    patch = subprocess.run([*git, "diff", "--cached", "--binary"], check=True, capture_output=True).stdout
    assert b"GIT binary patch" in patch
    report = guard(patch, repo)
    assert report.refused == []
    assert {(f.path, f.category) for f in report.flagged} == {("blob.bin", "binary"), ("one.bin", "binary")}
    assert all(f.reason == "binary change: review cannot show its content" for f in report.flagged)


@pytest.mark.parametrize("size", [1, 26, 27, 52, 53, 104, 1000])
def test_binary_hunks_of_every_line_length_are_read(tmp_path: Path, size: int) -> None:
    # incompressible payloads, so the zlib stream is longer than the payload and spans lines of every length
    payload = os.urandom(size)
    report = guard(binary_patch("x.bin", binary_hunk(payload)), tmp_path)
    assert report.refused == [] and [f.category for f in report.flagged] == ["binary"]


def _corrupt_line(hunk: bytes, index: int, line: bytes) -> bytes:
    lines = hunk.split(b"\n")
    lines[index] = line
    return b"\n".join(lines)


PAYLOAD = bytes(range(200))


@pytest.mark.parametrize(("hunk", "why"), [
    (b"literal\n", "expected `literal N` or `delta N` after `GIT binary patch`"),
    (b"literal x\n", "expected `literal N` or `delta N` after `GIT binary patch`"),
    (b"copy 5\n", "expected `literal N` or `delta N` after `GIT binary patch`"),
    (b"literal 5\n\n", "empty binary hunk"),
    (binary_hunk(PAYLOAD).rstrip(b"\n") + b"\n", "the patch ends inside a binary hunk"),
    (_corrupt_line(binary_hunk(PAYLOAD), 1, b"!" + binary_hunk(PAYLOAD).split(b"\n")[1][1:]),
     "bad length character in a binary hunk"),
    (_corrupt_line(binary_hunk(PAYLOAD), 1, binary_hunk(PAYLOAD).split(b"\n")[1][:-5]),
     "binary hunk line length disagrees with its length character"),
    (_corrupt_line(binary_hunk(PAYLOAD), 1, b"A\"\"\"\"\""), "bad base85 data in a binary hunk"),
    (binary_hunk(PAYLOAD, size=len(PAYLOAD) + 1), "binary hunk does not inflate to its declared size"),
    (binary_hunk(PAYLOAD, size=len(PAYLOAD) - 1), "binary hunk inflates past its declared size"),
    (binary_hunk(PAYLOAD, compressed=b"\x78\x9c" + os.urandom(30)), "corrupt zlib data in a binary hunk"),
    (binary_hunk(PAYLOAD, compressed=zlib.compress(PAYLOAD) + b"trailing"),
     "binary hunk does not inflate to its declared size"),
    (binary_hunk(PAYLOAD, compressed=zlib.compress(PAYLOAD)[:-6]), "binary hunk does not inflate to its declared size"),
    # a zlib bomb: 30 MB of zeros declared as 10 bytes is refused after inflating a little more than 10
    (binary_hunk(b"\0" * 30_000_000, size=10), "binary hunk inflates past its declared size"),
])
def test_a_binary_hunk_that_is_not_exactly_what_it_declares_is_refused(tmp_path: Path, hunk: bytes,
                                                                       why: str) -> None:
    # a hunk cut short is the end of the patch: nothing after it
    report = guard(binary_patch("x.bin", hunk, reverse=None if hunk.endswith(b"\n\n") else b""), tmp_path)
    assert [(f.path, f.category) for f in report.refused] == [("", "parse")], report
    assert report.refused[0].reason.endswith(f": {why}"), report.refused[0].reason
    # where: the line (shown, cut at 60 characters) or the end of the patch
    assert re.match(r"unparseable patch at (line \d+ \('.{1,61}'\)|end of patch): ", report.refused[0].reason), \
        report.refused[0].reason


def test_a_symlink_given_as_a_binary_literal_is_followed_like_any_other(tmp_path: Path) -> None:
    # git writes a link's target as a binary literal when asked to (--binary with a non-text target): the guard
    # must read the target from the literal, not take "binary" as "cannot tell"
    outside = guard(binary_patch("lnk", binary_hunk(b"../../etc"), mode="120000"), tmp_path)
    assert refused_paths(outside, "symlink") == {"lnk"}, outside
    inside = guard(binary_patch("lnk", binary_hunk(b"src/app.py"), mode="120000"), tmp_path)
    assert refused_paths(inside) == set(), inside
    # a delta hunk does not show the whole target: that is refused, never guessed
    delta = guard(binary_patch("lnk", binary_hunk(b"src/app.py", kind="delta"), mode="120000"), tmp_path)
    assert refused_paths(delta, "symlink") == {"lnk"}, delta


# --------------------------------------------------------------------------------------------------------------
# derive_final: the bytes written are computed on the host from the reviewed patch
# --------------------------------------------------------------------------------------------------------------

def _committed_then_changed(tmp_path: Path, files: dict[str, bytes], change: dict[str, bytes]) -> bytes:
    work = tmp_path / "w"
    work.mkdir()
    git_cmd = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(work)]
    subprocess.run([*git_cmd, "init", "-q"], check=True)
    for name, data in files.items():
        (work / name).write_bytes(data)
    (work / "run.sh").chmod(0o755)
    (work / "link").symlink_to("run.sh")
    subprocess.run([*git_cmd, "add", "-A"], check=True)
    subprocess.run([*git_cmd, "commit", "-qm", "base"], check=True)
    for name, data in change.items():
        (work / name).write_bytes(data)
    return subprocess.run([*git_cmd, "diff", "--binary", "--full-index"], capture_output=True, check=True).stdout


def test_derive_final_leaves_out_what_the_patch_does_not_touch(tmp_path: Path) -> None:
    """Unchanged executables, links and files of the base are not "changed" paths (their modes and hashes are
    recomputed exactly as git records them): only the listed path comes back."""
    from runner.promote.derive import derive_final

    files = {"edit.txt": b"one\n", "run.sh": b"#!/bin/sh\n", "plain.txt": b"plain\n"}
    patch = _committed_then_changed(tmp_path, files, {"edit.txt": b"ONE\n"})
    base: dict[str, FileState | None] = {name: FileState("file", data) for name, data in files.items()}
    base["run.sh"] = FileState("file", b"#!/bin/sh\n", True)
    base["link"] = FileState("symlink", b"run.sh")
    assert derive_final(base, patch, ["edit.txt"]) == {"edit.txt": FileState("file", b"ONE\n")}


def test_derive_final_names_why_a_patch_does_not_apply(tmp_path: Path) -> None:
    from runner.promote.derive import PatchMismatchError, derive_final

    patch = _committed_then_changed(tmp_path, {"edit.txt": b"one\n", "run.sh": b"x\n"}, {"edit.txt": b"ONE\n"})
    with pytest.raises(PatchMismatchError) as caught:
        derive_final({"edit.txt": FileState("file", b"something else\n")}, patch, ["edit.txt"])
    assert str(caught.value) == ("the reviewed patch does not apply to the state the run started from "
                                 "(error: patch failed: edit.txt:1)")
    with pytest.raises(PatchMismatchError) as caught:
        derive_final({}, patch, ["edit.txt"])  # the base has no such file
    assert str(caught.value).startswith("the reviewed patch does not apply to the state the run started from (error:")


@pytest.mark.parametrize(("links", "dirs", "patch", "reasons"), [
    ({"etc": "/etc"}, (), symlink("x", "etc/passwd"),
     ["symlink to etc/passwd goes through the symlink etc, which points to the absolute path /etc"]),
    ({"d/g2": "../sub/.git"}, ("d", "sub/.git"), symlink("x", "d/g2/config"),
     ["symlink to d/g2/config resolves into .git"]),
    ({"a": "b", "b": "a"}, (), symlink("x", "a/y"), ["symlink to a/y is a symlink loop"]),
    ({"up": "../.."}, (), symlink("x", "up/y"), ["symlink to up/y resolves outside the repository"]),
    ({"lnk": "real"}, ("real",), added("lnk/sub/x"), ["written through lnk, a symlink in your tree"]),
    ({}, (), symlink("l1", "l2") + symlink("l2", "l1") + added("l1/x"),
     ["symlink to l2 is a symlink loop", "symlink to l1 is a symlink loop",
      "written through l1, a symlink this patch creates"]),
])
def test_each_symlink_refusal_says_exactly_which_link_and_why(tmp_path: Path, links: dict[str, str],
                                                              dirs: tuple[str, ...], patch: bytes,
                                                              reasons: list[str]) -> None:
    report = guard(patch, _tree(tmp_path, links, dirs=dirs))
    assert [f.reason for f in report.refused] == reasons


@pytest.mark.parametrize(("header", "why"), [
    ('diff --git "a/x\\q" "b/x\\q"', "bad escape \\q in a quoted name"),
    ('diff --git "a/x "b/x"', "no space after the first quoted name"),
    ('diff --git "a/x', "unterminated quoted name"),
])
def test_a_badly_quoted_name_in_a_patch_is_refused_with_the_reason(tmp_path: Path, header: str, why: str) -> None:
    report = guard(f"{header}\nnew file mode 100644\n".encode(), tmp_path)
    assert [(f.path, f.category) for f in report.refused] == [("", "parse")]
    assert report.refused[0].reason.endswith(f": {why}"), report.refused[0].reason


@pytest.mark.parametrize(("line", "shown"), [
    (b"@@ " + b"g" * 57, "'@@ " + "g" * 57 + "'"),             # 60 characters: shown whole
    (b"@@ " + b"g" * 58, "'@@ " + "g" * 57 + "…'"),            # 61: cut at 60, and says so
    (b"@@ " + b"g" * 100, "'@@ " + "g" * 57 + "…'"),
    (b"@@ \xff\x1b[2J", "'@@ \\\\xff\\\\x1b[2J'"),              # raw bytes and escapes shown as text, inert
])
def test_an_unreadable_line_is_quoted_short_and_inert(tmp_path: Path, line: bytes, shown: str) -> None:
    report = guard(b"diff --git a/x b/x\n" + line + b"\n", tmp_path)
    assert [f.reason for f in report.refused] == [
        f"unparseable patch at line 2 ({shown}): unexpected line in a diff block"]


@pytest.mark.parametrize(("patch", "path", "reason"), [
    (added("x") + added("x"), "x", "the patch changes this path more than once"),
    (added("x") + added("x") + added("x"), "x", "the patch changes this path more than once"),
    (added("/etc/x"), "/etc/x", "absolute path"),
    (added("a//b"), "a//b", "path has an empty component"),
    (added("a/./b"), "a/./b", "path has a '.' or '..' component (it could leave the repository)"),
    (added("a/../b"), "a/../b", "path has a '.' or '..' component (it could leave the repository)"),
])
def test_paths_a_patch_may_not_name(tmp_path: Path, patch: bytes, path: str, reason: str) -> None:
    report = guard(patch, tmp_path)
    assert [(f.path, f.category, f.reason) for f in report.refused] == [(path, "path", reason)]


@pytest.mark.parametrize(("name", "runs_code"), [
    ("prod.dockerfile", True), ("Dockerfile.dev", True), ("settings.gradle.kts", True), ("build.gradle", True),
    ("docker-compose.yml", True), ("compose.yaml", True), ("docker-compose.override.yml", True), ("x.mk", True),
    ("a.pth", True), ("sub/.circleci/config.yml", True), (".circleci/config.yml", True),
    ("config.yml", False), ("docs/config.yml", False), ("notes/compose.md", False), ("gradle.md", False),
])
def test_build_and_ci_files_by_name(name: str, runs_code: bool) -> None:
    assert (runs_code_reason(name) is not None) is runs_code, (name, runs_code_reason(name))


@pytest.mark.parametrize(("name", "shadows"), [
    ("json.py", True), ("json/__init__.py", True), ("src/os.py", True), ("tests/os/__init__.py", True),
    # found by mutation testing (were not flagged): Python imports these as the module too
    ("json.pyc", True), ("src/os.pyc", True), ("json.so", True), ("json.cpython-311-x86_64-linux-gnu.so", True),
    ("json.abi3.so", True),
    ("json", False), ("json.pyi", False), ("json.txt", False), ("json.tar.gz", False), ("a/b/json.pyc", False),
    ("jsonx.py", False), ("mylib.py", False),
])
def test_files_that_shadow_a_standard_library_module(name: str, shadows: bool) -> None:
    reason = runs_code_reason(name)
    assert (reason is not None and "standard-library module" in reason) is shadows, (name, reason)
