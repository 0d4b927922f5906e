"""BENCHMARKS.md is written by several scripts: each owns one marked section and replaces only that."""

from __future__ import annotations

from pathlib import Path


def write_section(output: Path, name: str, report: str, *, first: bool = False) -> None:
    """Replace the section `name` of the report (what other benchmarks wrote stays); a new section goes at the top
    (`first`) or the end."""
    start, end = f"<!-- {name}: start -->", f"<!-- {name}: end -->"
    section = f"{start}\n{report.rstrip()}\n{end}\n"
    existing = output.read_text() if output.exists() else ""
    if start in existing and end in existing:
        before, _, rest = existing.partition(start)
        _, _, after = rest.partition(end)
        output.write_text(before + section + after.lstrip("\n"))
    elif first:
        output.write_text(section + ("\n" + existing if existing else ""))
    else:
        output.write_text((existing.rstrip("\n") + "\n\n" if existing else "") + section)
