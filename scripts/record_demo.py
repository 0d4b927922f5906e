#!/usr/bin/env python3
"""Record a real `smol run` on a pseudo-terminal, with the scripted model answering slowly as a local 14B model does,
as docs/first-run.cast (asciicast v2) and docs/first-run.md (what the terminal shows at the end).

Run from the checkout: .venv/bin/python scripts/record_demo.py (needs Docker and the sandbox image, as the tests do)."""

import json
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import GIT  # noqa: E402 - the checkout's tests are imported from its root
from tests.fake_ollama import FakeOllama, final, tool  # noqa: E402
from tests.test_agent_e2e import BUGGY  # noqa: E402

root = Path(tempfile.mkdtemp()) / "calc"
root.mkdir()
for p, c in BUGGY.items():
    (root / p).parent.mkdir(parents=True, exist_ok=True)
    (root / p).write_text(c)
subprocess.run([*GIT, "-C", str(root), "init", "-q"])
subprocess.run([*GIT, "-C", str(root), "add", "."])
subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "calc"])
os.chown(root, 1000, 1000)
for dirpath, dirs, files in os.walk(root):
    for n in dirs + files:
        os.lchown(os.path.join(dirpath, n), 1000, 1000)
script = [
    {"delay": 3, "content": "I'll run the tests first to see what fails.", **tool("run_tests")},
    {
        "delay": 2,
        "content": "test_add fails: add() subtracts. Let me read src/app.py.",
        **tool("read_file", path="src/app.py"),
    },
    {
        "delay": 3,
        "content": "The fix is one line.",
        **tool(
            "propose_patch",
            path="src/app.py",
            old_text="def add(a, b):\n    return a - b",
            new_text="def add(a, b):\n    return a + b",
        ),
    },
    tool("apply_patch", patch_id="p1"),
    {"delay": 1, **tool("run_tests")},
    final("add() now adds; all tests pass."),
]
with FakeOllama(script) as fake:
    master, slave = pty.openpty()
    env = {
        **os.environ,
        "MODEL_API_BASE": fake.url,
        "PHOENIX_ENABLED": "false",
        "TERM": "xterm-256color",
        "COLUMNS": "110",
    }
    cmd = ["smol", "run", "Fix the failing test", "--promote", "ask"]
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("smol")), *cmd[1:]],
        cwd=root,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    start = time.monotonic()
    events = []
    out = b""
    answered = False
    while True:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            events.append([round(time.monotonic() - start, 3), "o", chunk.decode(errors="replace")])
            if not answered and b"[s]ave for later?" in out:
                time.sleep(1.0)
                os.write(master, b"a\n")
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait()
header = {
    "version": 2,
    "width": 110,
    "height": 40,
    "timestamp": int(time.time()),
    "title": "smol run: a live run with a scripted slow model",
    "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
}
prompt = "$ " + " ".join(f'"{c}"' if " " in c else c for c in cmd) + "\r\n"
with open(ROOT / "docs/first-run.cast", "w") as f:
    f.write(json.dumps(header) + "\n")
    f.write(json.dumps([0.0, "o", prompt]) + "\n")
    for e in events:
        f.write(json.dumps([e[0] + 0.5, e[1], e[2]]) + "\n")


def render(cast: Path) -> str:
    """What the terminal shows at the end: a line redrawn in place (\\r ESC[K) keeps only its last state."""
    text = "".join(json.loads(line)[2] for line in cast.read_text().splitlines()[1:])
    shown = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        last = raw.split("\r\x1b[K")[-1]
        shown.append(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", last))
    return "\n".join(shown).rstrip() + "\n"


INTRO = """# A first run, recorded

`first-run.cast` is a real `smol run` on a pseudo-terminal (asciicast v2: `asciinema play docs/first-run.cast`),
recorded by `scripts/record_demo.py` against the scripted model the tests use, answering slowly as a local 14B
model does. While the model thinks, one line counts the seconds in place; its words appear as they stream; each
step says what matters (`1 passed, 1 failed`, `exit 2`, `denied`). Below is what the terminal shows at the end (the
live line is redrawn in place, so only its last state remains):

```text
"""
(ROOT / "docs/first-run.md").write_text(INTRO + render(ROOT / "docs/first-run.cast") + "```\n")
print("exit", proc.returncode)
