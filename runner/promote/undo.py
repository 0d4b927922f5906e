"""`smol undo`: take back exactly what a promotion wrote, from the before/after states it recorded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runner.promote.apply import Plan, PromotionError
from runner.promote.flow import Echo
from runner.records import RunRecord, RunStore
from runner.textsafe import sanitize_for_terminal


def written_states(plan: Plan) -> list[dict[str, Any]]:
    """What a promotion wrote, path by path (before and after), so `smol undo` can take exactly that back."""
    from runner.promote.journal import encode_state

    return [{"path": c.path, "before": encode_state(c.current), "after": encode_state(c.after)} for c in plan.changes]


def undo(record: RunRecord, store: RunStore, echo: Echo) -> dict[str, Any]:
    """Take back what the promotion of `record` wrote to the working tree, all or nothing: refused, with nothing
    written, when a file it wrote has changed since (it is someone's work now)."""
    from runner.promote.apply import Plan, PlannedChange, apply_plan, read_state
    from runner.promote.journal import decode_state

    promotion = record.promotion or {}
    applied = _last_applied(promotion)
    if applied is None:
        raise PromotionError(f"run {record.id} has no applied promotion to undo (its promotion: "
                             f"{promotion.get('outcome', 'none')}); `smol runs show {record.id}` shows it")
    repo = Path(record.repo)
    plan = Plan()
    changed = []
    for entry in applied["written"]:
        before, after = decode_state(entry["before"]), decode_state(entry["after"])
        if read_state(repo, entry["path"]) != after:
            changed.append(entry["path"])
        plan.changes.append(PlannedChange(entry["path"], after, before))
    if changed:
        shown = ", ".join(sanitize_for_terminal(p, single_line=True) for p in changed[:10])
        raise PromotionError(f"cannot undo run {record.id}: changed since it was applied: {shown}; nothing was "
                             "written")
    apply_plan(repo, plan)
    undone = {**{k: v for k, v in promotion.items() if k != "written"}, "outcome": "undone", "at": time.time(),
              "detail": f"{len(plan.changes)} file(s) put back as they were before the promotion"}
    undone["earlier"] = [*promotion.get("earlier", []), {k: v for k, v in promotion.items() if k != "earlier"}]
    store.update(record.id, promotion=undone)
    echo(f"undo: {undone['detail']}")
    return undone


def _last_applied(promotion: dict[str, Any]) -> dict[str, Any] | None:
    """The newest promotion that wrote the working tree, unless it was undone since (later outcomes such as
    "already applied" or "saved" do not hide it)."""
    for entry in [promotion, *reversed(promotion.get("earlier", []))]:
        if entry.get("outcome") == "undone":
            return None
        if entry.get("outcome") == "applied":
            return entry if "written" in entry else None
    return None
