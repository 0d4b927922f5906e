"""Which mutants of an earlier mutation run no longer stand for the code of a later revision: the functions of the
mutated modules (pyproject.toml's [tool.mutmut] only_mutate) whose code differs between the two revisions, as
mutmut name globs, one per line. `scripts/mutation --rev NEW --update` re-runs just these and keeps the earlier
run's results for every other mutant: mutmut numbers mutants per function, so an unchanged function has the same
mutants under the same names in both runs.

A module whose top-level code changed (a constant, a table, an import) counts as changed whole: its functions
read those names, so any of their mutants may now fare differently. Comparison is on the syntax tree, so an edit
of comments or of layout alone changes nothing."""

from __future__ import annotations

import argparse
import ast
import fnmatch
import gzip
import subprocess
import sys
import tomllib
from pathlib import Path


def _source(rev: str, path: str) -> str | None:
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def mutated_paths(rev: str) -> list[str]:
    """The files of `rev` that mutmut mutates (its only_mutate patterns, as in that revision's pyproject.toml)."""
    config = tomllib.loads(_source(rev, "pyproject.toml") or "")["tool"]["mutmut"]
    listed = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "--", *config["source_paths"]],
                            capture_output=True, text=True, check=True).stdout.split()
    return sorted(path for path in listed if path.endswith(".py")
                  and any(fnmatch.fnmatch(path, pattern) for pattern in config["only_mutate"]))


def functions(source: str) -> tuple[dict[str, str], str]:
    """(mutmut's name for each top-level function and method -> its syntax tree dumped, the rest of the module
    dumped). mutmut names `def f` `x_f` and `def m` of `class C` `xǁCǁm`."""
    tree = ast.parse(source)
    found: dict[str, str] = {}
    rest: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[f"x_{node.name}"] = ast.dump(node)
        elif isinstance(node, ast.ClassDef):
            body = []
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    found[f"xǁ{node.name}ǁ{item.name}"] = ast.dump(item)
                else:
                    body.append(ast.dump(item))
            heading = [ast.dump(n) for n in (*node.bases, *node.keywords, *node.decorator_list)]
            rest.append(f"class {node.name}{heading}: {body}")
        else:
            rest.append(ast.dump(node))
    return found, "\n".join(rest)


def changed(old: str | None, new: str | None, module: str) -> list[str]:
    """Globs for the mutants of `module` (dotted) that differ between two versions of its source."""
    if new is None:
        return [f"{module}.*"] if old is not None else []
    new_functions, new_rest = functions(new)
    old_functions, old_rest = functions(old) if old is not None else ({}, None)
    if old_rest != new_rest:
        return [f"{module}.*"]
    return [f"{module}.{name}__mutmut_*" for name in sorted(set(old_functions) | set(new_functions))
            if old_functions.get(name) != new_functions.get(name)]


def merged(results: str, earlier: str) -> dict[str, str]:
    """Each mutant's status from `mutmut results --all true` lines (`results`), taken from an earlier listing
    (`earlier`) where `results` did not run the mutant: `mutmut run NAMES` keeps only the named mutants' results.
    Lines starting with `#` (the header of mutation-results.gz) are skipped."""
    statuses: dict[str, str] = {}
    for text in (earlier, results):
        for line in text.splitlines():
            name, _, status = line.strip().partition(": ")
            if name and not name.startswith("#") and (status != "not checked" or name not in statuses):
                statuses[name] = status
    return statuses


def carried(results: str, earlier: str, globs: list[str]) -> tuple[str, list[str]]:
    """(the statuses an update keeps, as `mutmut results --all true` lines; the mutants it must run besides the
    globs). Kept: the merged statuses (see `merged`), except the mutants the globs name (their code changed) and
    the mutants no run has checked yet (an interrupted run: they are run now, by name)."""
    statuses = merged(results, earlier)
    fresh = {name for name in statuses if any(fnmatch.fnmatchcase(name, glob) for glob in globs)}
    kept = "".join(f"    {name}: {status}\n" for name, status in statuses.items()
                   if name not in fresh and status != "not checked")
    return kept, sorted(name for name, status in statuses.items() if name not in fresh and status == "not checked")


def module_name(path: str) -> str:
    return path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("old", help="the revision the earlier run measured")
    parser.add_argument("new", help="the revision to measure now")
    parser.add_argument("--carry", type=Path, metavar="DIR",
                        help="the earlier run's snapshot: write the results to keep to DIR/.carried-results")
    parser.add_argument("--results", type=Path, metavar="FILE",
                        help="with --carry, read the earlier results from FILE (mutation-results.gz) instead of "
                             "from DIR's mutmut, for a machine without the snapshot")
    parser.add_argument("--changed-only", action="store_true",
                        help="with --carry, name only the changed functions, not the mutants no run has checked")
    args = parser.parse_args()
    globs: list[str] = []
    for path in sorted(set(mutated_paths(args.old)) | set(mutated_paths(args.new))):
        globs += changed(_source(args.old, path), _source(args.new, path), module_name(path))
    if args.carry is not None:
        earlier_file = args.carry / ".earlier-results"
        if args.results is not None:
            results, earlier = gzip.decompress(args.results.read_bytes()).decode(), ""
        else:
            results = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=args.carry,
                                     capture_output=True, text=True, check=True).stdout
            earlier = earlier_file.read_text() if earlier_file.exists() else ""
        kept, unchecked = carried(results, earlier, globs)
        (args.carry / ".carried-results").write_text(kept)
        globs += [] if args.changed_only else unchecked
    print("\n".join(globs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
