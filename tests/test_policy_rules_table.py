"""The built-in rule table, entry by entry: what each default rule lets run, what it asks about, what it refuses,
and which options take a command out of ALLOW.

The table (`runner.policy.rules.default_rules`) is the contract a user reads in the approval prompt and the run
record: the rule's name (`default:<kind>`) says why, and its reason names the command it matched. An option in a
rule's `unless` list is one that makes an otherwise harmless tool write files, run other programs or reach out
(`pytest --basetemp`, `sort -o`, `tox -x`, `cargo test --config`); a `requires` list names the flags without which
a formatter rewrites the tree (`black` without `--check`). Each such option is a case here, spelt as an agent would
send it, because mutation testing showed no test named most of them (MUTATION.md)."""

from __future__ import annotations

import pytest

from runner.policy import CommandPolicy, Decision

ALLOW, ASK, DENY = Decision.ALLOW, Decision.REQUIRE_APPROVAL, Decision.DENY


@pytest.fixture
def policy() -> CommandPolicy:
    # function-scoped: the table is built per policy, so a mutant of it is seen by every test that builds one
    return CommandPolicy()


# (command as sent, the words the reason names, rule kind)
TEST_RUNNERS = ["pytest", "py.test", "unittest", "nox", "npm test", "npm run test", "yarn test", "pnpm test", "tox",
                "cargo test", "go test", "make test"]
READ_ONLY = ["ls", "cat", "head", "tail", "wc", "grep", "egrep", "fgrep", "stat", "diff", "echo", "pwd", "true",
             "rg", "find", "tree", "file", "sort", "uniq"]
GIT_READ = ["git status", "git rev-parse", "git ls-files", "git blame", "git diff", "git log", "git show", "git grep"]
INSTALLS = ["pip install", "pip download", "pip3 install", "pip3 download", "uv pip install", "uv add", "uv sync",
            "poetry install", "poetry add", "npm install", "npm i", "npm ci", "npm add", "npm update", "yarn add",
            "yarn install", "pnpm install", "pnpm i", "pnpm add", "gem install", "cargo install", "cargo add",
            "cargo fetch", "go get", "go install", "go mod download", "conda install", "apt", "apt-get", "aptitude",
            "apk", "yum", "dnf", "brew", "npx"]
NETWORK = ["curl", "wget", "ssh", "scp", "sftp", "rsync", "nc", "ncat", "netcat", "telnet", "ftp", "git fetch",
           "git pull", "git push", "git clone", "git ls-remote", "git submodule"]
PRIVILEGE = ["sudo", "su", "doas", "pkexec", "runuser"]
STOPS = ["shutdown", "reboot", "halt", "poweroff", "telinit", "killall5"]
ESCAPES = ["docker", "docker-compose", "podman", "nerdctl", "ctr", "crictl", "runc", "nsenter", "unshare", "chroot",
           "pivot_root", "mount", "umount", "insmod", "modprobe", "rmmod", "kexec", "capsh", "setcap"]
DISKS = ["fdisk", "sfdisk", "parted", "wipefs", "swapon", "swapoff"]


def _table() -> list[object]:
    cases: list[object] = []
    for words in TEST_RUNNERS:
        cases.append(pytest.param(words, ALLOW, "test-runner", f"`{words}` runs the project's tests", id=words))
    for words, shown in (("ruff check", "ruff check"), ("ruff format --check", "ruff format --check"),
                         ("flake8", "flake8"), ("mypy", "mypy"), ("pylint", "pylint"),
                         ("black --check .", "black --check"), ("isort --check-only .", "isort --check-only"),
                         ("eslint", "eslint"), ("prettier --check .", "prettier --check")):
        cases.append(pytest.param(words, ALLOW, "linter", f"`{shown}` checks the code without changing it", id=words))
    for words in READ_ONLY:
        cases.append(pytest.param(words, ALLOW, "read-only", f"`{words}` only reads", id=words))
    for words in GIT_READ:
        cases.append(pytest.param(words, ALLOW, "git-read", f"`{words}` only reads the repository", id=words))
    cases.append(pytest.param("git branch", ALLOW, "git-read", "`git branch` only lists branches", id="git branch"))
    for words in INSTALLS:
        cases.append(pytest.param(f"{words} x", ASK, "network", f"`{words}` installs packages from the network",
                                  id=words))
    for words in NETWORK:
        cases.append(pytest.param(f"{words} x", ASK, "network", f"`{words}` uses the network", id=words))
    for words in PRIVILEGE:
        cases.append(pytest.param(words, DENY, "privilege", f"`{words}` changes privileges", id=words))
    for words in STOPS:
        cases.append(pytest.param(words, DENY, "destructive", f"`{words}` stops the machine", id=words))
    for words in ESCAPES:
        cases.append(pytest.param(f"{words} x", DENY, "escape", f"`{words}` reaches for the container runtime",
                                  id=words))
    for words in DISKS:
        cases.append(pytest.param(f"{words} x", DENY, "destructive", f"`{words}` manipulates disks", id=words))
    cases += [
        pytest.param("mkfs.ext4 img", DENY, "destructive", "formats a file system", id="mkfs.ext4"),
        pytest.param("mke2fs img", DENY, "destructive", "formats a file system", id="mke2fs"),
        pytest.param("mkswap img", DENY, "destructive", "formats a file system", id="mkswap"),
        pytest.param("rm -rf /", DENY, "destructive", "`rm` on /", id="rm"),
        pytest.param("chmod -R 777 /", DENY, "destructive", "`chmod` on /", id="chmod"),
        pytest.param("chown -R me /etc", DENY, "destructive", "`chown` on /", id="chown"),
        pytest.param("chgrp -R me ~", DENY, "destructive", "`chgrp` on /", id="chgrp"),
        pytest.param("kill -9 -1", DENY, "destructive", "`kill -1` signals every process", id="kill"),
        pytest.param("dd if=x of=/dev/sda", DENY, "device", "a device or kernel interface", id="dd-device"),
    ]
    return cases


@pytest.mark.parametrize(("command", "decision", "kind", "reason"), _table())
def test_each_default_rule_decides_under_its_own_name_and_names_the_command(
        policy: CommandPolicy, command: str, decision: Decision, kind: str, reason: str) -> None:
    """The prompt says which rule decided and quotes the command it matched: a reason that reads "`None` runs
    the project's tests" or a rule called `default:None` tells the person approving nothing."""
    result = policy.evaluate(command)
    assert (result.decision, result.rule) == (decision, f"default:{kind}"), result
    assert reason in result.reason, result


# Options that make a tool the table allows write outside its output, run another program, or change what
# "the project's tests" are. Each spelling turns ALLOW into a question or a refusal.
UNLESS = [
    ("pytest", ["--basetemp=/tmp/x", "--basetemp /tmp/x", "--pastebin=all", "--pastebin all"]),
    ("py.test", ["--basetemp=/tmp/x", "--pastebin=failed"]),
    ("tox", ["-x testenv.commands=sh", "--override testenv.commands=sh", "--override=testenv.commands=sh"]),
    ("cargo test", ["--config build.rustc=x", "--config=build.rustc=x", "-Z unstable-options", "-Zbuild-std"]),
    ("go test", ["-exec ./x", "-exec=./x", "--exec ./x", "-toolexec ./x", "-toolexec=./x", "-overlay o.json",
                 "--overlay=o.json"]),
    ("ruff check", ["--fix", "--fix-only", "--add-noqa", "--watch", "-w", "--output-file o", "--output-file=o",
                    "-o o", "-oo"]),
    ("flake8", ["--output-file o", "--output-file=o"]),
    ("mypy", ["--install-types", "--install-types --non-interactive"]),
    ("pylint", ["--output o", "--output=o"]),
    ("eslint", ["--fix", "--output-file o", "--output-file=o", "-o o"]),
    ("prettier --check", ["--write", "-w"]),
    ("rg x", ["--pre ./p", "--pre=./p", "--pre-glob '*.txt' --pre ./p"]),
    ("tree", ["-o out.txt", "-ao out.txt"]),
    ("file", ["-C", "--compile", "-C -m magic"]),
    ("sort x", ["-o y", "-oy", "--output y", "--output=y", "--compress-program=./p", "--compress-program ./p"]),
    ("git diff", ["--output=o", "--output o", "--ext-diff"]),
    ("git log", ["--output=o", "--output o"]),
    ("git show", ["--output=o", "--output o"]),
    ("git grep x", ["-O", "-Ovim", "--open-files-in-pager", "--open-files-in-pager=vim"]),
]


@pytest.mark.parametrize(("command", "option"), [
    pytest.param(command, option, id=f"{command} {option}") for command, options in UNLESS for option in options])
def test_an_option_that_writes_or_runs_something_takes_the_command_out_of_allow(
        policy: CommandPolicy, command: str, option: str) -> None:
    assert policy.evaluate(command).decision is ALLOW  # the command alone is allowed ...
    result = policy.evaluate(f"{command} {option}")
    assert result.decision is not ALLOW, result  # ... and the option makes it a question at least


@pytest.mark.parametrize(("command", "option"), [
    pytest.param(command, option, id=f"{command} {option}")
    for command, options in UNLESS if not command.startswith(("rg", "git grep", "tree", "file", "sort"))
    for option in options])
def test_the_same_option_after_double_dash_is_an_operand(policy: CommandPolicy, command: str, option: str) -> None:
    """`pytest -- --basetemp=x` passes a file name, not the option: an `unless` option is only an option before
    `--`. But not after an option: `prettier --check -- --write` may be `--check`'s value followed by an option
    (`git grep -e -- -O…` is), so the option still counts there. (Left out: tools whose operands the analyser
    reads on its own terms.)"""
    after_an_option = command.split()[-1].startswith("-")
    assert (policy.evaluate(f"{command} -- {option}").decision is ALLOW) is not after_an_option


# Formatters that rewrite the tree unless told to only check: allowed with one of these flags, a question without.
REQUIRES = [
    ("ruff format", ["--check", "--diff"]),
    ("black", ["--check", "--diff"]),
    ("isort", ["--check-only", "--check", "--diff", "-c"]),
    ("prettier", ["--check", "-c", "--list-different", "-l"]),
]


@pytest.mark.parametrize(("command", "flag"), [
    pytest.param(command, flag, id=f"{command} {flag}") for command, flags in REQUIRES for flag in flags])
def test_a_formatter_is_allowed_only_in_check_mode(policy: CommandPolicy, command: str, flag: str) -> None:
    assert policy.evaluate(f"{command} src").decision is ASK
    result = policy.evaluate(f"{command} {flag} src")
    assert (result.decision, result.rule) == (ALLOW, "default:linter"), result
    # the flag must be given literally: a prefix of it is not the check mode (`--che` may be another option)
    if flag.startswith("--"):
        assert policy.evaluate(f"{command} {flag[:-1]} src").decision is ASK
    # and after `--` it is a file name
    assert policy.evaluate(f"{command} -- {flag} src").decision is ASK


def test_prettier_in_check_mode_that_also_writes_is_a_question(policy: CommandPolicy) -> None:
    assert policy.evaluate("prettier --check --write .").decision is ASK
    assert policy.evaluate("prettier -l -w .").decision is ASK


@pytest.mark.parametrize(("command", "expected"), [
    # git reads the word after --contains/--merged/… as the commit even when it starts with `-` (checked with git
    # 2.47: `git branch --merged -d other` fails with "malformed object name -d" and deletes nothing)
    ("git branch --merged -d other", ALLOW),
    ("git branch --contains -D", ALLOW),
    ("git branch --points-at=-d", ALLOW),
    ("git branch --contains=HEAD -d other", ASK),  # with `=` the next word is the option it looks like
    ("git branch -d other", ASK),
    ("git branch newbranch", ASK),
    ("git branch --list 'feat*'", ALLOW),
])
def test_git_branch_reads_a_filters_commit_as_git_does(policy: CommandPolicy, command: str,
                                                       expected: Decision) -> None:
    assert policy.evaluate(command).decision is expected
