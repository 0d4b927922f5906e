"""A checkpoint of the sandbox's change between chat tasks, so `/undo` can take back the last task exactly.

The checkpoint is the diff before the task plus the states of the files it touched; undoing puts every file the
newer diff touches back to its checkpointed state (or its original one) and checks the diff is the old one again."""

from __future__ import annotations

from dataclasses import dataclass

from runner.sandbox.base import FileState, Sandbox


def restore_states(sandbox: Sandbox, states: dict[str, FileState | None]) -> None:
    """Write each path's state into the sandbox: None removes it, a symlink is made as a link."""
    for path, state in states.items():
        if state is None:
            sandbox.exec(["rm", "-f", "--", path])
        elif state.kind == "symlink":
            sandbox.exec(["ln", "-sfn", "--", state.data.decode("utf-8", "surrogateescape"), path])
        else:
            sandbox.write(path, state.data, executable=state.executable)


def _paths(patch: bytes) -> set[str]:
    from runner.promote.patchread import parse_patch

    return {path for change in parse_patch(patch) for path in (change.old_path, change.new_path) if path}


@dataclass
class Checkpoint:
    diff: bytes
    states: dict[str, FileState | None]

    @classmethod
    def take(cls, sandbox: Sandbox) -> Checkpoint:
        diff = sandbox.diff()
        paths = sorted(_paths(diff))
        found = sandbox.export_files(paths) if paths else {}
        return cls(diff, {path: found.get(path) for path in paths})

    def restore(self, sandbox: Sandbox) -> bool:
        """Put the sandbox back to this checkpoint; True when its diff is exactly the checkpoint's again."""
        newer = sorted(_paths(sandbox.diff()) - set(self.states))
        originals = sandbox.export_files(newer, original=True) if newer else {}
        restore_states(sandbox, {**{path: originals.get(path) for path in newer}, **self.states})
        return sandbox.diff() == self.diff
