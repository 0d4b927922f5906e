"""Guarded promotion: guard -> plan -> re-verify in a fresh sandbox -> review -> guard and plan again -> write.

Nothing is written unless every step agrees; the patch is saved before the review starts, so an interrupt or a
rejection never loses the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from runner.promote.apply import Plan, PromotionError, apply_plan, make_plan
from runner.promote.derive import PatchMismatchError, derive_final, first_disagreement
from runner.promote.guard import GuardReport, guard, parse_patch, summarize
from runner.promote.land import dirty_paths, head_states, land_on_branch, land_on_current_branch
from runner.promote.verify import Verification, verify_plan
from runner.sandbox.base import FileState
from runner.textsafe import sanitize_for_terminal

if TYPE_CHECKING:
    from runner.config import Settings
    from runner.records import RunRecord, RunStore
    from runner.sandbox.base import Sandbox

PromoteMode = Literal["never", "ask", "auto-if-verified"]
Echo = Callable[[str], None]
ReviewAsker = Callable[[str, list[str]], str]
"""(question, choices) -> one of the choices; raises EOFError/KeyboardInterrupt when the user leaves."""


def touched_paths(patch: bytes) -> list[str]:
    paths: set[str] = set()
    for change in parse_patch(patch):
        for path in (change.old_path, change.new_path):
            if path:
                paths.add(path)
    return sorted(paths)


def capture_files(sandbox: Sandbox, patch: bytes) -> tuple[dict[str, FileState | None], dict[str, FileState | None]]:
    """The base and final states of every path the patch touches (None where absent)."""
    paths = touched_paths(patch)
    base = sandbox.export_files(paths, original=True)
    final = sandbox.export_files(paths)
    return {p: base.get(p) for p in paths}, {p: final.get(p) for p in paths}


REVIEW_MAX_LINES = 5000
"""Longest diff printed for review; the rest is named, and the whole patch is in the saved file."""
_STYLES = {"bold": "\x1b[1m", "cyan": "\x1b[36m", "green": "\x1b[32m", "red": "\x1b[31m"}


def render_diff(patch: bytes, *, color: bool, saved: Path | None = None) -> list[str]:
    """The diff as review lines: escapes neutralised, binary content summarised (base85 means nothing to a
    reader and a 10 MB file is 13 MB of it), at most REVIEW_MAX_LINES lines."""
    lines: list[str] = []
    in_binary = False
    hidden = 0  # base85 lines not shown since the last summary

    def style(line: str, name: str) -> str:
        return f"{_STYLES[name]}{line}\x1b[0m" if color else line

    def flush() -> None:
        nonlocal hidden
        if hidden:
            lines.append(f"    ({hidden} lines of base85 binary data not shown)")
            hidden = 0

    # Lines end at "\n" only: str.splitlines would also break at \r, \v, \f, \x1c-\x1e, \x85, U+2028/9 inside a
    # line's content and print the rest as a line of its own, unprefixed, where it reads as unchanged context.
    for raw in patch.decode("utf-8", errors="replace").removesuffix("\n").split("\n"):
        if in_binary and not raw.startswith("diff --git"):
            if raw.startswith(("literal ", "delta ")):
                flush()
                lines.append(style(sanitize_for_terminal(raw), "bold"))
            elif raw:
                hidden += 1
            else:
                flush()
            continue
        flush()
        in_binary = False
        line = sanitize_for_terminal(raw)
        if line.startswith("GIT binary patch"):
            in_binary = True
            lines.append(style(line, "bold"))
        elif line.startswith(("diff --git", "index ", "--- ", "+++ ", "new file", "deleted file", "rename ",
                              "old mode", "new mode", "similarity", "Binary files")):
            lines.append(style(line, "bold"))
        elif line.startswith("@@"):
            lines.append(style(line, "cyan"))
        elif line.startswith("+"):
            lines.append(style(line, "green"))
        elif line.startswith("-"):
            lines.append(style(line, "red"))
        else:
            lines.append(line)
    flush()
    if len(lines) > REVIEW_MAX_LINES:
        hidden = len(lines) - REVIEW_MAX_LINES
        where = f"; the whole patch is in {saved}" if saved else ""
        lines = lines[:REVIEW_MAX_LINES] + [f"... {hidden} more lines of the diff not shown here{where}"]
    return lines


class Promoter:
    def __init__(self, record: RunRecord, store: RunStore, settings: Settings, *, echo: Echo,
                 ask: ReviewAsker | None, color: bool = False, patch_dir: Path | None = None) -> None:
        self.record = record
        self.store = store
        self.settings = settings
        self.echo = echo
        self.ask = ask
        self.color = color
        self.repo = Path(record.repo)
        self.patch_dir = patch_dir or store.path.parent / "patches"
        self.decisions: list[dict[str, Any]] = []
        """Every approval decision of this promotion (what, when, outcome, by whom), kept with the run record."""
        self.verification: Verification | None = None

    def save_patch(self) -> Path:
        from runner.records import write_private

        target = self.patch_dir / f"{self.record.id}.patch"
        write_private(target, self.record.diff)  # a patch may hold secrets from the repo: owner-only, no symlinks
        return target

    def _decision(self, what: str, outcome: str, by: str) -> None:
        from opentelemetry import trace

        decision = {"what": what, "outcome": outcome, "by": by, "at": time.time()}
        self.decisions.append(decision)
        trace.get_current_span().add_event("approval", {"approval.what": what, "approval.outcome": outcome,
                                                         "approval.by": by})

    def _ask(self, question: str, choices: list[str], what: str) -> str:
        assert self.ask is not None
        answer = self.ask(question, choices)
        self._decision(what, answer, "user")
        return answer

    def _finish(self, outcome: str, detail: str, **extra: Any) -> dict[str, Any]:
        promotion = {"outcome": outcome, "detail": detail, "at": time.time(), "decisions": self.decisions, **extra}
        if self.verification is not None:
            promotion["verification"] = asdict(self.verification)
        previous = self.record.promotion
        if previous:  # an earlier promotion of this run stays on record: outcomes are added, never overwritten
            earlier = list(previous.get("earlier", []))
            earlier.append({key: value for key, value in previous.items() if key != "earlier"})
            promotion["earlier"] = earlier
        self.store.update(self.record.id, promotion=promotion)
        # The detail names files, a branch, the task's words: never raw on the terminal.
        shown = sanitize_for_terminal(detail, single_line=True)
        self.echo(f"promotion: {outcome}" + (f" — {shown}" if detail else ""))
        from runner.records import public_promotion

        public = public_promotion(promotion)
        assert public is not None
        return public

    def run(self, mode: PromoteMode, *, reverify: bool = True, land: str = "worktree",
            branch: str | None = None) -> dict[str, Any]:
        from opentelemetry import trace

        with trace.get_tracer("smol.promotion").start_as_current_span("promotion") as span:
            outcome = self._run(mode, reverify=reverify, land=land, branch=branch)
            span.set_attributes({"promotion.mode": mode, "promotion.outcome": outcome["outcome"],
                                 "promotion.detail": outcome["detail"][:500], "promotion.land": land})
            return outcome

    def _run(self, mode: PromoteMode, *, reverify: bool, land: str, branch: str | None) -> dict[str, Any]:
        from opentelemetry import trace

        record = self.record
        if not record.diff:
            return self._finish("nothing to promote", "the run changed nothing")
        saved = self.save_patch()
        report = guard(record.diff, self.repo)
        self._show_report(report)
        if not report.ok:
            return self._finish("refused", f"the guard refused the change; the patch is saved at {saved}",
                                refused=[asdict(f) for f in report.refused])
        try:
            final_files = self._final_files()
        except PatchMismatchError as error:
            return self._finish("refused", f"{error}; nothing was written, the patch is saved at {saved}")
        try:
            plan, head = self._plan(land, final_files)
        except PromotionError as error:
            return self._finish("refused", f"{error}; nothing was written, the patch is saved at {saved}")
        if not plan.ok:
            return self._finish("conflict", f"conflicting files: {plan.describe_conflicts()}; nothing was applied, "
                                            f"the patch is saved at {saved}", conflicts=plan.conflicts)
        if not plan.changes and plan.already_applied and land != "branch":
            return self._finish("already applied", f"every file already holds this change "
                                                   f"({len(plan.already_applied)} file(s)); nothing was written")
        refusal = self._landing_refusal(land, plan)
        if refusal:
            return self._finish("refused", f"{refusal}; nothing was written, the patch is saved at {saved}")
        verification = Verification("skipped")
        if reverify:
            self.echo("re-verifying the change in a fresh sandbox built from your current tree…")
            with trace.get_tracer("smol.promotion").start_as_current_span("promotion.verify") as span:
                verification = verify_plan(self.repo, plan, self.settings)
                span.set_attributes({"verify.status": verification.status, "verify.passed": verification.passed,
                                     "verify.failed": verification.failed, "verify.command": verification.command or "",
                                     "verify.source": verification.source})
        self.verification = verification
        self.store.update(record.id, verification=asdict(verification))
        # The command may come from the repo's own .env (SMOL_TEST_COMMAND), its note from the sandbox.
        self.echo(f"verification: {sanitize_for_terminal(verification.render(), single_line=True)}")
        for line in render_diff(record.diff, color=self.color, saved=saved):
            self.echo(line)

        accepted = self._decide(mode, report, plan, verification)
        if accepted is None:
            rejected = any(d["by"] == "user" and d["what"] == "the change" and d["outcome"] == "r"
                           for d in self.decisions)
            return self._finish("rejected" if rejected else "saved",
                                f"not applied; the patch is saved at {saved} "
                                f"(`smol promote {record.id}` brings it back)")
        # The tree may have changed during the review: guard and plan again right before writing.
        report = guard(record.diff, self.repo)
        if not report.ok:
            return self._finish("refused", "the guard refused the change on the second check")
        try:
            plan, head = self._plan(land, final_files)
        except PromotionError as error:
            return self._finish("refused", f"{error}; nothing was written")
        if not plan.ok:
            return self._finish("conflict", f"the tree changed during review; conflicting files: "
                                            f"{plan.describe_conflicts()}; nothing was applied",
                                conflicts=plan.conflicts)
        skipped = sorted(c.path for c in plan.changes if c.path not in accepted)
        plan.changes = [c for c in plan.changes if c.path in accepted]
        if not plan.changes:
            return self._finish("saved", f"no file was approved; the patch is saved at {saved}", skipped=skipped)
        refusal = self._landing_refusal(land, plan)
        if refusal:
            return self._finish("refused", f"{refusal}; nothing was written, the patch is saved at {saved}")
        if land == "branch":
            name = branch or f"smol/{record.id}"
            try:
                commit = land_on_branch(self.repo, plan, name, f"smol: {record.task}\n\nrun {record.id}", head=head)
            except PromotionError as error:
                return self._finish("refused", f"{error}; nothing was written, the patch is saved at {saved}")
            return self._finish("applied", f"committed {len(plan.changes)} file(s) on branch {name} ({commit[:12]})",
                                files=[c.path for c in plan.changes], branch=name, commit=commit)
        if land == "commit":
            commit, index_note = land_on_current_branch(self.repo, plan, f"smol: {record.task}\n\nrun {record.id}")
            detail = f"{len(plan.changes)} file(s) written and committed on the current branch ({commit[:12]})"
            if index_note:
                detail += f"; {index_note}"
            return self._finish("applied", detail, files=[c.path for c in plan.changes], commit=commit)
        apply_plan(self.repo, plan)
        merged = [c.path for c in plan.changes if c.merged]
        detail = f"{len(plan.changes)} file(s) written to the working tree"
        if merged:
            detail += f" ({len(merged)} merged three-way: {', '.join(merged)})"
        if skipped:
            detail += "; not applied (skipped in the review): " + ", ".join(
                sanitize_for_terminal(path, single_line=True) for path in skipped)
        detail += f"; `smol undo {record.id}` takes it back"
        from runner.promote.undo import written_states

        return self._finish("applied", detail, files=[c.path for c in plan.changes], merged=merged,
                            skipped=skipped, written=written_states(plan))

    def _plan(self, land: str, final_files: dict[str, FileState | None]) -> tuple[Plan, str | None]:
        """The write plan. A branch commit is planned against HEAD, not the working tree, so that it holds HEAD
        plus the agent's change and none of the user's uncommitted lines (those stay in the working tree only)."""
        paths = touched_paths(self.record.diff)
        if land != "branch":
            return make_plan(self.repo, self.record.base_files, final_files, paths), None
        head, states = head_states(self.repo, paths)
        return make_plan(self.repo, self.record.base_files, final_files, paths, against=states), head

    def _landing_refusal(self, land: str, plan: Plan) -> str | None:
        """Why the chosen landing cannot be done cleanly, found before verification and review, not after."""
        if land == "commit":
            dirty = dirty_paths(self.repo, plan)
            if dirty:
                shown = ", ".join(sanitize_for_terminal(p, single_line=True) for p in sorted(dirty))
                return (f"uncommitted changes in {shown} would end up in smol's commit: commit or stash them "
                        "first, or use --land worktree or --land branch")
        return None

    def _final_files(self) -> dict[str, FileState | None]:
        """What will be written: the base with the reviewed patch applied, derived here on the host. The sandbox's
        own report of the final files must agree, or nothing is written."""
        paths = touched_paths(self.record.diff)
        derived = derive_final(self.record.base_files, self.record.diff, paths)
        disagreement = first_disagreement(derived, {p: self.record.final_files.get(p) for p in paths})
        if disagreement is not None:
            shown = sanitize_for_terminal(disagreement, single_line=True)
            raise PatchMismatchError(f"the sandbox reported different bytes for {shown} than the reviewed patch "
                                     "produces (something in the sandbox altered the export)")
        return derived

    def _show_report(self, report: GuardReport) -> None:
        self.echo("changes:")
        for line in summarize(report):
            self.echo(f"  {line}")
        for finding in report.refused:
            self.echo(f"  REFUSED {sanitize_for_terminal(finding.path or '(whole change)', single_line=True)}: "
                      f"{finding.reason}")
        for finding in report.flagged:
            shown = sanitize_for_terminal(finding.path or "(whole change)", single_line=True)
            self.echo(f"  NEEDS CONFIRMATION {shown}: {finding.reason}")

    def _decide(self, mode: PromoteMode, report: GuardReport, plan: Plan,
                verification: Verification) -> set[str] | None:
        """The set of paths to write, or None to keep the change as a saved patch only."""
        all_paths = {c.path for c in plan.changes}
        flagged = {f.path for f in report.flagged}
        if mode == "never":
            self._decision("the change", "saved (--promote never)", "configuration")
            return None
        if mode == "auto-if-verified":
            if verification.status != "passed":
                self.echo(f"not applied automatically: verification {verification.status}")
                self._decision("the change", f"saved (verification {verification.status})", "configuration")
                return None
            if flagged:
                self.echo("not applied automatically: some files need explicit confirmation")
                self._decision("the change", "saved (files need explicit confirmation)", "configuration")
                return None
            self._decision("the change", "applied (verification passed)", "configuration")
            return all_paths
        if self.ask is None:
            self._decision("the change", "saved (no terminal to ask)", "configuration")
            return None
        choice = self._ask("apply: [a]ll, [f]ile by file, [r]eject, [s]ave for later?", ["a", "f", "r", "s"],
                           "the change")
        if choice in ("r", "s"):
            return None
        for finding in report.flagged:
            if not finding.path and self._ask(f"the change as a whole: {finding.reason}; go on? [y/n]", ["y", "n"],
                                              f"the change as a whole: {finding.reason}") != "y":
                return None
        chosen = set(all_paths)
        if choice == "f":
            chosen = {p for p in sorted(all_paths)
                      if self._ask(f"apply {sanitize_for_terminal(p, single_line=True)}? [y/n]", ["y", "n"],
                                   f"file {p}") == "y"}
        for path in sorted(flagged & chosen):
            reason = next(f.reason for f in report.flagged if f.path == path)
            if self._ask(f"{sanitize_for_terminal(path, single_line=True)} {reason}: really apply it? [y/n]",
                         ["y", "n"], f"flagged file {path} ({reason})") != "y":
                chosen.discard(path)
        return chosen


__all__ = ["PromoteMode", "Promoter", "PromotionError", "Verification", "capture_files", "touched_paths"]
