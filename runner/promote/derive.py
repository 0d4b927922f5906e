"""The bytes smol writes are derived on the host from the reviewed patch, never taken from the sandbox.

The sandbox reports the final state of every touched path, but whatever runs in there is the agent's to shape; the
patch is what the user reviews. So the final state of each path is computed here: the recorded base state with the
patch applied by `git apply --cached` into a private, throw-away repository (no work tree: no attributes, filters,
hooks or config of anyone's are ever consulted). The sandbox's report is only a cross-check; a disagreement refuses
the promotion.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zlib
from pathlib import Path

from runner.promote.apply import GIT_ENV, SAFE_GIT, PromotionError
from runner.sandbox.base import FileState

_MODES = {"100644": False, "100755": True}


class PatchMismatchError(PromotionError):
    """The reviewed patch and the sandbox's report of the final files disagree, or the patch does not apply."""


def _write_blob(objects: Path, data: bytes) -> str:
    """A loose object written directly: one subprocess per file would cost seconds on large changes."""
    raw = b"blob %d\0" % len(data) + data
    digest = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
    folder = objects / digest[:2]
    folder.mkdir(exist_ok=True)
    target = folder / digest[2:]
    if not target.exists():
        target.write_bytes(zlib.compress(raw, 1))
    return digest


def _read_blobs(env: dict[str, str], scratch: str, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    result = subprocess.run([*SAFE_GIT, "cat-file", "--batch"], input="".join(f"{s}\n" for s in shas).encode(),
                            capture_output=True, env=env, cwd=scratch, check=False)
    if result.returncode != 0:
        raise PatchMismatchError(f"reading the patched files failed: {result.stderr.decode(errors='replace')[:300]}")
    blobs: dict[str, bytes] = {}
    out, position = result.stdout, 0
    for _ in shas:
        end = out.index(b"\n", position)
        sha, kind, size = out[position:end].decode().split(" ")
        start = end + 1
        blobs[sha] = out[start:start + int(size)]
        position = start + int(size) + 1
    return blobs


def derive_final(base: dict[str, FileState | None], patch: bytes, paths: list[str]) -> dict[str, FileState | None]:
    """The state of every path in `paths` after applying `patch` to `base` (None where absent afterwards).

    Raises PatchMismatchError when the patch does not apply to the base it was made from.
    """
    with tempfile.TemporaryDirectory(prefix="smol-derive-") as scratch:
        git_dir = Path(scratch, "repo.git")
        env = {**GIT_ENV, "GIT_DIR": str(git_dir), "GIT_INDEX_FILE": str(Path(scratch, "index")), "HOME": scratch,
               "GIT_ATTR_NOSYSTEM": "1", "XDG_CONFIG_HOME": scratch}

        def git(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run([*SAFE_GIT, *args], input=data, capture_output=True, env=env, cwd=scratch,
                                  check=False)

        init = git("init", "--quiet", "--bare", str(git_dir))
        if init.returncode != 0:
            raise PatchMismatchError(f"git init failed: {init.stderr.decode(errors='replace')[:300]}")
        objects = git_dir / "objects"
        entries = []
        for path, state in sorted(base.items()):
            if state is None:
                continue
            mode = "120000" if state.kind == "symlink" else ("100755" if state.executable else "100644")
            entries.append(f"{mode} {_write_blob(objects, state.data)}\t".encode() + os.fsencode(path) + b"\0")
        if entries:
            indexed = git("update-index", "-z", "--index-info", data=b"".join(entries))
            if indexed.returncode != 0:
                raise PatchMismatchError(
                    f"recording the base state failed: {indexed.stderr.decode(errors='replace')[:300]}")
        applied = git("apply", "--cached", "--binary", "--whitespace=nowarn", "-", data=patch)
        if applied.returncode != 0:
            reason = applied.stderr.decode("utf-8", errors="replace").strip().splitlines()
            raise PatchMismatchError("the reviewed patch does not apply to the state the run started from"
                                     + (f" ({reason[0][:200]})" if reason else ""))
        listing = git("ls-files", "--stage", "-z")
        staged: dict[str, tuple[str, str]] = {}
        for entry in filter(None, listing.stdout.split(b"\0")):
            meta, _, name = entry.partition(b"\t")
            mode, sha, _stage = meta.decode().split(" ")
            staged[os.fsdecode(name)] = (mode, sha)
        before = {p: ("120000" if s.kind == "symlink" else "100755" if s.executable else "100644",
                      hashlib.sha1(b"blob %d\0" % len(s.data) + s.data, usedforsecurity=False).hexdigest())
                  for p, s in base.items() if s is not None}
        changed = {p for p in set(before) | set(staged) if before.get(p) != staged.get(p)}
        unlisted = sorted(changed - set(paths))
        if unlisted:
            # git read the patch as touching a path our reader did not list: the review would not match the write
            raise PatchMismatchError(f"git reads the patch as changing {unlisted[0]!r}, which the review did not show")
        odd = [p for p in paths if p in staged and staged[p][0] != "120000" and staged[p][0] not in _MODES]
        if odd:  # a gitlink (submodule) names a commit, not a blob: nothing smol could write (the guard only asks)
            raise PatchMismatchError(f"{odd[0]}: the patch makes it a {staged[odd[0]][0]} entry, which smol never "
                                     "writes")
        wanted = [staged[p] for p in paths if p in staged]
        blobs = _read_blobs(env, scratch, sorted({sha for _, sha in wanted}))
    final: dict[str, FileState | None] = {}
    for path in paths:
        if path not in staged:
            final[path] = None
            continue
        mode, sha = staged[path]
        final[path] = FileState("symlink", blobs[sha]) if mode == "120000" else FileState("file", blobs[sha],
                                                                                          _MODES[mode])
    return final


def first_disagreement(derived: dict[str, FileState | None], reported: dict[str, FileState | None]) -> str | None:
    """The first path whose derived final state differs from the sandbox's report, or None when they agree."""
    for path in sorted(set(derived) | set(reported)):
        if derived.get(path) != reported.get(path):
            return path
    return None


__all__ = ["PatchMismatchError", "derive_final", "first_disagreement"]
