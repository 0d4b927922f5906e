"""The review queue: every run (a `smol run` saved for later, a batch task, a CI job's run) whose change waits for
a person. It is a view of the run store, not a second store: a run waits while it has a change and its promotion
outcome is none yet, "saved" or "conflict"; applying, rejecting or dropping it takes it out.

Whatever is promoted from the queue goes through the ordinary promotion (runner.promote.flow): the same guard,
re-verification against the current tree and atomic write."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.records import RunRecord, RunStore

WAITING = frozenset({"saved", "conflict"})
"""Promotion outcomes after which a change still waits for review (none at all waits too)."""
SCANNED = 500
"""How many recent runs the queue looks through."""


@dataclass
class QueueEntry:
    record: RunRecord
    verified: bool
    verification: dict[str, Any] | None
    refused: list[dict[str, str]] = field(default_factory=list)
    flagged: list[dict[str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    """Other queued runs of the same repo that change one of the same files: applying one may conflict with it."""

    @property
    def files(self) -> list[str]:
        return [entry["path"] for entry in (self.record.summary.get("diff") or {}).get("files", [])]

    def to_dict(self) -> dict[str, Any]:
        diff = self.record.summary.get("diff") or {}
        return {"run_id": self.record.id, "repo": self.record.repo, "task": self.record.task,
                "created_at": self.record.created_at, "status": self.record.status, "verified": self.verified,
                "verification": self.verification, "files": self.files, "added": diff.get("added", 0),
                "removed": diff.get("removed", 0), "guard": {"refused": self.refused, "flagged": self.flagged},
                "conflicts": self.conflicts, "batch": self.record.summary.get("batch"),
                "promotion": (self.record.promotion or {}).get("outcome")}


def is_waiting(record: RunRecord) -> bool:
    return bool(record.diff) and (record.promotion is None or record.promotion.get("outcome") in WAITING)


def waiting(store: RunStore, *, repo: str | None = None) -> list[QueueEntry]:
    """The queue: grouped by repo (the repo with the newest waiting run first), verified changes first within a
    repo, newest first within those."""
    from runner.promote.guard import guard

    records = [record for record in store.list(SCANNED, repo=repo, files=False) if is_waiting(record)]
    entries = []
    for record in records:
        verification = (record.promotion or {}).get("verification") or record.verification
        entry = QueueEntry(record, bool(verification and verification.get("status") == "passed"), verification)
        if Path(record.repo).is_dir():
            report = guard(record.diff, Path(record.repo))
            entry.refused = [{"path": f.path, "reason": f.reason} for f in report.refused]
            entry.flagged = [{"path": f.path, "reason": f.reason} for f in report.flagged]
        else:
            entry.refused = [{"path": "", "reason": f"the repo {record.repo} is gone"}]
        entries.append(entry)
    for entry in entries:
        mine = set(entry.files)
        entry.conflicts = [other.record.id for other in entries if other is not entry
                           and other.record.repo == entry.record.repo and mine & set(other.files)]
    newest: dict[str, float] = {}
    for entry in entries:
        newest[entry.record.repo] = max(newest.get(entry.record.repo, 0.0), entry.record.created_at)
    entries.sort(key=lambda e: (-newest[e.record.repo], e.record.repo, not e.verified, -e.record.created_at))
    return entries


def drop(store: RunStore, run_ids: list[str]) -> list[str]:
    """Take runs out of the queue without applying them (their patches stay saved; `smol promote` still works)."""
    records = [store.get(run_id) for run_id in run_ids]  # every id checked before anything changes
    for record in records:
        if not is_waiting(record):
            raise UsageError(f"run {record.id} is not waiting for review (promotion: "
                             f"{(record.promotion or {}).get('outcome', 'none')})")
    for record in records:
        promotion: dict[str, Any] = {"outcome": "dropped", "detail": "dropped from the review queue",
                                     "at": time.time(), "decisions": []}
        if record.promotion:
            earlier = list(record.promotion.get("earlier", []))
            earlier.append({key: value for key, value in record.promotion.items() if key != "earlier"})
            promotion["earlier"] = earlier
        store.update(record.id, promotion=promotion)
    return [record.id for record in records]
