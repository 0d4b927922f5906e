"""The run summary's diff stat (`runner.agent.session.diff_stat`) counts lines by hunk structure.

A content line that starts with `++` or `--` is `+++…`/`---…` in the patch; counting by prefix takes it for a
file header. `runner.promote.linecounts.line_counts` counts correctly; diff_stat must agree with it.
"""

from __future__ import annotations

from runner.promote.linecounts import line_counts

PATCH = (b"diff --git a/q.sql b/q.sql\nindex 1111111..2222222 100644\n--- a/q.sql\n+++ b/q.sql\n"
         b"@@ -1,3 +1,3 @@\n keep\n--- a SQL comment\n-x\n+++ y\n+z\n"
         b"diff --git a/new.txt b/new.txt\nnew file mode 100644\nindex 0000000..3333333\n--- /dev/null\n"
         b"+++ b/new.txt\n@@ -0,0 +1,2 @@\n+++ b/new.txt\n+--- a/old\n")


def test_line_counts_of_header_like_content() -> None:
    assert [(c.path, c.added, c.removed) for c in line_counts(PATCH)] == [("q.sql", 2, 2), ("new.txt", 2, 0)]


def test_diff_stat_counts_header_like_content_lines() -> None:
    from runner.agent.session import diff_stat

    stat = diff_stat(PATCH)
    assert [(f.path, f.added, f.removed) for f in stat.files] == [("q.sql", 2, 2), ("new.txt", 2, 0)]
    assert (stat.added, stat.removed) == (4, 2)
