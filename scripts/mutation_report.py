"""Summarise a mutmut run of scripts/mutation into MUTATION.md: per module the mutants, how many the tests killed,
how many survived, how many are equivalent (listed with a reason in scripts/mutation-equivalents.txt), and the
survivors themselves so the next person knows what the tests still miss.

Only mutmut's command line is used (`mutmut results`, `mutmut show`), not its internals, so a mutmut upgrade
within 3.x keeps this working."""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # run as a script or loaded from a test: its sibling module
from mutation_changed import merged  # noqa: E402

BEGIN = "<!-- mutation:begin (written by scripts/mutation; edit around it) -->"
END = "<!-- mutation:end -->"

KILLED = {"killed", "timeout", "caught by type check"}
"""A mutant that makes a test fail, hang past mutmut's limit (an infinite loop) or fail type checking is caught."""

_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")

PARTIAL_SCOPE = {
    "runner/sandbox/base.py": {"normalize_path"},
    "runner/sandbox/runtime.py": {"parse_left_out"},
}
"""Modules of which only some functions belong to the trust boundary measured here: the rest drives the Docker
engine and is tested by the docker suite, which is too slow to run once per mutant."""


@dataclass
class Module:
    path: str
    statuses: Counter[str] = field(default_factory=Counter)
    equivalent: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    wording: list[str] = field(default_factory=list)


def is_wording(lines: list[str]) -> bool:
    """A mutant that only rewrites the text of a message: one line, one string literal of prose (four words or
    more, not an option list) wrapped in XX or case-changed, the rest of the line untouched. No decision reads
    such a string; it only tells a person why. A literal that is compared (`"No such file or directory" in
    output`, `== "…"`) is matched against text and decides something: never wording."""
    if len(lines) != 2 or lines[0][0] != "-" or lines[1][0] != "+":
        return False
    old, new = lines[0][1:], lines[1][1:]
    for literal in _LITERAL.finditer(old):
        quote, body = literal.group()[0], literal.group()[1:-1]
        if len(body.split()) < 4 or body.lstrip().startswith("-"):
            continue
        after, before = old[literal.end():].lstrip(), old[:literal.start()].rstrip()
        if after.startswith(("in ", "not in ", "==", "!=")) or before.endswith(("==", "!=", " in")):
            continue
        for variant in (f"XX{body}XX", body.upper(), body.lower()):
            if variant != body and old[:literal.start()] + quote + variant + quote + old[literal.end():] == new:
                return True
    return False


def module_and_function(name: str, modules: list[str]) -> tuple[str, str]:
    """'runner.policy.words.x_expand__mutmut_3' -> ('runner/policy/words.py', 'expand'); methods are mangled
    as 'xǁClassǁmethod'."""
    dotted, _, rest = name.rpartition(".x")
    path = dotted.replace(".", "/") + ".py"
    if path not in modules and dotted.replace(".", "/") + "/__init__.py" in modules:
        path = dotted.replace(".", "/") + "/__init__.py"
    function = re.sub(r"__mutmut_\d+$", "", rest).removeprefix("_").lstrip("ǁ").replace("ǁ", ".")
    return path, function.split(".")[-1]


def mutmut(snapshot: Path, *args: str) -> str:
    for attempt in range(3):  # mutmut rewrites its result files while it runs: a read can race with a write
        result = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=snapshot, capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout
        time.sleep(1 + attempt)
    raise SystemExit(f"mutation: `mutmut {' '.join(args)}` failed in {snapshot}: {result.stderr.strip()[-300:]}")


def mutant_diffs(snapshot: Path, names: list[str], module_files: list[str]) -> dict[str, str]:
    """`mutmut show NAME` for many mutants, in this process: a `mutmut show` subprocess per mutant took ~15 minutes
    for a thousand survivors, reading the diffs here takes seconds (the same mutmut function, run from the
    snapshot, which is where it looks for the mutants)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(snapshot)
    try:
        return {name: get_diff_for_mutant(name, path=module_and_function(name, module_files)[0]) for name in names}
    finally:
        os.chdir(here)


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def fingerprint(lines: list[str]) -> str:
    """Ties an equivalence entry to the mutation it was judged on: mutmut numbers mutants per function, so after
    an edit the same name can denote another mutation, and the entry must then be judged again."""
    return hashlib.sha256("\n".join(line[1:].strip() for line in lines).encode()).hexdigest()[:8]


def read_equivalents(path: Path) -> dict[str, tuple[str, str]]:
    entries: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, digest, why = line.split(maxsplit=2)
            entries[name] = (digest, why)
    return entries


def renumbered(entries: dict[str, tuple[str, str]], undecided: dict[str, str]) -> dict[str, str]:
    """Old name -> new name for equivalence entries whose mutant mutmut renumbered: an edit elsewhere in a function
    shifts the numbers of its mutants, so an entry's name can come to denote another change while its own change
    survives under a new number. Only an exact match moves an entry: the same function, the same fingerprint (the
    same changed lines), and as many unclaimed survivors with that fingerprint as stale entries (paired in order,
    which is mutmut's order of the code). Anything else stays stale, to be judged again by a person.
    `undecided` maps each mutant no test killed to its fingerprint."""
    def function(name: str) -> str:
        return name.rsplit("__mutmut_", 1)[0]

    def number(name: str) -> int:
        return int(name.rsplit("__mutmut_", 1)[1])

    claimed = {name for name, (digest, _) in entries.items() if undecided.get(name) == digest}
    stale: dict[tuple[str, str], list[str]] = {}
    for name, (digest, _) in entries.items():
        if name not in claimed:
            stale.setdefault((function(name), digest), []).append(name)
    free: dict[tuple[str, str], list[str]] = {}
    for name, digest in undecided.items():
        if name not in claimed:
            free.setdefault((function(name), digest), []).append(name)
    moves: dict[str, str] = {}
    for key, names in stale.items():
        targets = free.get(key, [])
        if len(targets) == len(names):
            moves.update(zip(sorted(names, key=number), sorted(targets, key=number), strict=True))
    # A move onto the name of an entry that stays (stale, with no match of its own) would leave two lines under
    # one name: such a move waits for that entry to be judged again
    while blocked := [old for old, new in moves.items() if new in entries and new not in moves]:
        for old in blocked:
            del moves[old]
    return moves


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def rename_entries(path: Path, moves: dict[str, str]) -> None:
    """Rewrite the equivalence list with `moves` applied all at once (an entry can move onto the name another
    entry moves away from), keeping comments, order and reasons."""
    lines = []
    for line in path.read_text().splitlines():
        name, space, rest = line.partition(" ")
        lines.append(f"{moves[name]}{space}{rest}" if not line.startswith("#") and name in moves else line)
    path.write_text("\n".join(lines) + "\n")


def write_results(path: Path, header: str, statuses: dict[str, str]) -> None:
    """Every mutant's status after the merge, gzipped (~30 KB): `scripts/mutation --update` on another machine
    starts from it instead of a snapshot, running only changed functions and what no run has checked yet."""
    lines = [header, *(f"    {name}: {status}" for name, status in sorted(statuses.items()))]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))


def render(snapshot: Path, equivalents_path: Path, earlier: Path | None = None, renumber: bool = False,
           results_out: Path | None = None) -> str:
    # a re-run of some mutants (--again, --update) keeps the earlier run's results for the rest
    statuses = merged(mutmut(snapshot, "results", "--all", "true"), earlier.read_text() if earlier else "")
    rev = (snapshot / ".source-rev").read_text().strip() if (snapshot / ".source-rev").exists() else "?"
    seconds = (snapshot / ".seconds").read_text().strip() if (snapshot / ".seconds").exists() else "?"
    if results_out is not None:
        write_results(results_out, f"# rev {rev} seconds {seconds}", statuses)
    module_files = sorted({str(p.relative_to(snapshot / "mutants")).removesuffix(".meta")
                           for p in (snapshot / "mutants" / "runner").rglob("*.py.meta")})
    equivalents = read_equivalents(equivalents_path)
    def in_scope(name: str) -> bool:
        path, function = module_and_function(name, module_files)
        return path not in PARTIAL_SCOPE or function in PARTIAL_SCOPE[path]

    undecided = [name for name, status in statuses.items()
                 if status not in KILLED and status != "not checked" and in_scope(name)]
    diffs = mutant_diffs(snapshot, undecided, module_files)
    if renumber:
        moves = renumbered(equivalents, {name: fingerprint(changed_lines(diffs[name])) for name in undecided})
        rename_entries(equivalents_path, moves)
        equivalents = read_equivalents(equivalents_path)
        for old, new in sorted(moves.items()):
            print(f"mutation: renumbered {old} -> {new}", file=sys.stderr)
    modules: dict[str, Module] = {}
    stale: list[str] = []
    out_of_scope = 0
    for name, status in sorted(statuses.items()):
        path, function = module_and_function(name, module_files)
        if path in PARTIAL_SCOPE and function not in PARTIAL_SCOPE[path]:
            out_of_scope += 1
            continue
        module = modules.setdefault(path, Module(path))
        if status in KILLED:
            module.statuses["killed"] += 1
            if name in equivalents:
                stale.append(f"`{name}` is listed as equivalent but is killed: remove it from the list")
            continue
        if status == "not checked":
            module.statuses["not run"] += 1
            continue
        lines = changed_lines(diffs[name])
        shown = " / ".join(f"`{line[0]} {line[1:].strip()}`" for line in lines)
        if name in equivalents:
            digest, why = equivalents[name]
            if digest == fingerprint(lines):
                module.statuses["equivalent"] += 1
                module.equivalent.append(f"- `{name}` {shown}: {why}")
                continue
            stale.append(f"`{name}` changed since it was judged equivalent ({digest} != {fingerprint(lines)})")
        if is_wording(lines):
            module.statuses["wording"] += 1
            module.wording.append(f"- `{name}` {shown}")
            continue
        module.statuses["survived"] += 1
        module.survivors.append(f"- `{name}` ({status}, {fingerprint(lines)}) {shown}")

    # mutmut lists every mutant it generated, run or not: an entry naming none is left from code that changed
    stale += [f"`{name}` is no mutant of this run (its function changed): remove it or judge again"
              for name in sorted(set(equivalents) - set(statuses))]
    rows = ["| module | mutants | killed | survived | equivalent | wording | not run | kill rate |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    total: Counter[str] = Counter()
    for module in sorted(modules.values(), key=lambda m: m.path):
        counts = module.statuses
        total.update(counts)
        rows.append(row(module.path, counts))
    rows.append(row("**all**", total))
    run = f"mutmut wall clock {seconds} s"
    if (snapshot / ".updated-from").exists():  # scripts/mutation --update
        old_rev, old_seconds, globs = (snapshot / ".updated-from").read_text().split()
        run = (f"{globs} names or globs (the functions changed since `{old_rev}`, and the mutants no run had "
               f"checked) run at `{rev}` in {seconds} s; the rest kept from earlier runs (the last over `{old_rev}`, "
               f"{old_seconds} s)")
    text = [
        f"Run of {datetime.date.today().isoformat()} over `{rev}` on {machine()}; {run} "
        f"(niced, shared machine). {out_of_scope} mutants of Docker-only code in base.py/runtime.py are out of "
        "scope (see above).", "", *rows, "",
        "Kill rate = killed / (killed + survived): equivalent mutants, wording-only mutants and mutants not run are "
        "left out of it (the first two are listed below). A timeout counts as killed.", "",
    ]
    if stale:
        text += ["### Stale equivalence entries (judge again)", "", *(f"- {s}" for s in stale), ""]
    ordered = sorted(modules.values(), key=lambda m: m.path)
    text += ["### Surviving mutants", ""]
    text += [line for m in ordered for line in m.survivors] or ["none"]
    text += ["", "### Equivalent mutants", ""]
    text += [line for m in ordered for line in m.equivalent] or ["none"]
    found = [line for m in ordered for line in m.wording]
    text += ["", f"<details><summary>Wording-only mutants: {len(found)}</summary>", "", *(found or ["none"]), "",
             "</details>"]
    return "\n".join(text)


def row(label: str, counts: Counter[str]) -> str:
    judged = counts["killed"] + counts["survived"]
    rate = f"{100 * counts['killed'] / judged:.1f} %" if judged else "–"
    return (f"| {label} | {sum(counts.values())} | {counts['killed']} | {counts['survived']} "
            f"| {counts['equivalent']} | {counts['wording']} | {counts['not run']} "
            f"| {rate} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshot", type=Path, required=True)
    parser.add_argument("--equivalents", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--earlier", type=Path, default=None,
                        help="`mutmut results --all true` saved before a `mutmut run NAMES` re-run")
    parser.add_argument("--renumber", action="store_true",
                        help="move equivalence entries whose mutant mutmut renumbered (same function, same change)")
    parser.add_argument("--results-out", type=Path, default=None,
                        help="also write every mutant's status (gzipped) for a later --update")
    args = parser.parse_args()
    section = render(args.snapshot, args.equivalents, args.earlier, args.renumber, args.results_out)
    document = args.output.read_text() if args.output.exists() else f"# Mutation testing\n\n{BEGIN}\n{END}\n"
    if BEGIN not in document or END not in document:
        print(f"mutation: {args.output} has no '{BEGIN}' ... '{END}' section to write into", file=sys.stderr)
        return 2
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END)
    args.output.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
    print(section.split("\n\n")[1] if "\n\n" in section else section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
