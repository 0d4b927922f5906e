"""Loading the settings: which files are read, how far each is trusted, and one-line errors naming the key.

Precedence, highest first: overrides (flags) > the environment > the repo's own files (`.smol.toml` or
`[tool.smol]` at its git root, and a `.env` in the current directory that lies in the repo) > the user config file
($XDG_CONFIG_HOME/smol/config.env, default ~/.config/smol/config.env) > a trusted `.env` > defaults.
The repo's files are untrusted input, like the model's output: they may only tighten containment (see
runner.config.trust.REPO_FILE_RULES); every value they try to loosen is ignored with a warning.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.config.sections import Settings
from runner.config.trust import _ONLY, _REPO_FILE_LIMIT, FIXED, REPO_FILE_RULES, _may_replace
from runner.errors import ConfigError

log = logging.getLogger("runner.config")


def user_config_path() -> Path | None:
    """$XDG_CONFIG_HOME/smol/config.env (~/.config/smol/config.env): the user's own file, read with full trust."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is invalid and ignored
        try:
            base = str(Path.home() / ".config")
        except RuntimeError:  # no HOME and no passwd entry
            return None
    return Path(base) / "smol" / "config.env"


def _git_work_tree(directory: Path) -> Path | None:
    for candidate in (directory, *directory.parents):
        if os.path.lexists(candidate / ".git"):  # a directory, or a file in worktrees and submodules
            return candidate
    return None


def _repo_owned(env_file: Path, repo: str | os.PathLike[str] | None) -> str | None:
    """Why `env_file` belongs to a repo (so it may only tighten), or None when it is the user's own.

    `repo` is the repo smol works on; None means the current directory (the CLI's default `--repo .`), so without
    a repo that is demonstrably elsewhere the `.env` of the current directory is never trusted.
    """
    try:
        under_work = Path(repo if repo is not None else ".").resolve()
        places = {env_file.parent.resolve(), env_file.resolve().parent}  # where it is, and where a link leads
    except (OSError, RuntimeError):  # a symlink loop, a vanished directory
        return "its location cannot be resolved"
    for place in sorted(places):
        if place == under_work or under_work in place.parents:
            return "in the repo smol works on" if repo is not None else \
                "in the current directory, the repo smol works on by default"
        tree = _git_work_tree(place)
        if tree is not None:
            return f"in the git work tree {tree}"
    return None


def _read_repo_file(path: Path, why: str) -> tuple[dict[str, str], list[str]]:
    """The smol keys of an untrusted `.env`, read literally (no ${VAR} expansion: that would copy host values)."""
    from dotenv import dotenv_values

    def refuse(what: str) -> tuple[dict[str, str], list[str]]:
        where = user_config_path() or "~/.config/smol/config.env"
        return {}, [f"ignored {path} ({why}): {what}; put smol settings in the environment or in {where}"]

    if path.is_symlink():
        return refuse("it is a symbolic link")
    if not path.is_file():
        return refuse("it is not a regular file")
    if path.stat().st_size > _REPO_FILE_LIMIT:
        return refuse("it is larger than 1 MiB")
    try:
        raw = dotenv_values(path, encoding="utf-8", interpolate=False)
    except (OSError, UnicodeDecodeError) as error:
        return refuse(f"it cannot be read ({type(error).__name__})")
    values: dict[str, str] = {}
    for key, value in raw.items():
        if value is not None and key.lower() in Settings.model_fields:
            values[key.lower()] = value
    return values, []


# Keys that look like smol's: one of these in a config file that is not a setting is a typo, not someone else's key.
OUR_PREFIXES = ("MODEL_", "AGENT_", "SANDBOX_", "PHOENIX_", "VALIDATION_", "TRUNCATION_", "APPROVAL_", "SMOL_",
                "RUNS_", "POLICY_", "LOG_", "SUPPRESS_")


def unknown_keys(names: list[str]) -> list[str]:
    """One phrase per name that looks like a smol key but is none, with the nearest real key when there is one."""
    import difflib

    known = [field.upper() for field in Settings.model_fields]
    found = []
    for name in names:
        upper = name.upper()
        if upper.lower() in Settings.model_fields or not upper.startswith(OUR_PREFIXES):
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.6)
        found.append(f"unknown key {name}" + (f" (did you mean {near[0]}?)" if near else ""))
    return found


def _repo_unknown(path: Path) -> list[str]:
    from dotenv import dotenv_values

    try:
        return unknown_keys(list(dotenv_values(path, encoding="utf-8", interpolate=False)))
    except (OSError, UnicodeDecodeError):
        return []


def _describe(error: ValidationError, where: Any) -> str:
    """Every bad value at once, each with where it was set, on one line."""
    problems = []
    for item in error.errors():
        key = str(item["loc"][0]) if item["loc"] else "configuration"
        message = item["msg"].removeprefix("Value error, ")
        place = where(key.lower()) if callable(where) else where
        problems.append(f"{key.upper()}={item.get('input')!r} is not valid ({message}; set in {place})")
    return "; ".join(problems) if len(problems) == 1 else f"{len(problems)} settings are not valid: " + \
        "; ".join(problems)


def _where(key: str, overrides: dict[str, object], files: list[Path]) -> str:
    """Which trusted source set `key` (for an error message)."""
    from dotenv import dotenv_values

    if key in overrides:
        return "the arguments"
    if any(name.lower() == key for name in os.environ):
        return "the environment"
    for path in reversed(files):  # the later file wins
        try:
            if any(name.lower() == key for name in dotenv_values(path, encoding="utf-8")):
                return str(path)
        except (OSError, UnicodeDecodeError):
            continue
    return "the environment or the config file"


def _build(files: list[Path], overrides: dict[str, object], where: str | None = None) -> Settings:
    try:
        return Settings(_env_file=tuple(files) or None, **overrides)  # type: ignore[call-arg, arg-type]
    except ValidationError as error:
        place = where or (lambda key: _where(key, overrides, files))
        raise ConfigError(_describe(error, place)) from None


def _check_file_keys(files: list[Path]) -> None:
    """A trusted config file naming a key smol does not have is an error (all of them at once, with the nearest
    real key): `SANDBOX_MEMROY=1g` must not be ignored in silence."""
    from dotenv import dotenv_values

    problems = []
    for path in files:
        try:
            names = list(dotenv_values(path, encoding="utf-8", interpolate=False))
        except (OSError, UnicodeDecodeError):
            continue  # a missing or unreadable user file is read as empty, as before
        problems += [f"{problem} in {path}" for problem in unknown_keys(names)]
    if problems:
        raise ConfigError("; ".join(problems) + "; fix the spelling (.env.example lists every key)")


def environment_warnings() -> list[str]:
    """Environment variables one typo away from a smol key: warned about (the environment holds other programs'
    variables too, so only a near miss is named)."""
    import difflib

    known = [field.upper() for field in Settings.model_fields]
    warnings = []
    for name in sorted(os.environ):
        upper = name.upper()
        if upper.lower() in Settings.model_fields or not upper.startswith(OUR_PREFIXES):
            continue
        near = difflib.get_close_matches(upper, known, n=1, cutoff=0.85)
        if near:
            warnings.append(f"the environment variable {name} is not a smol setting (did you mean {near[0]}?)")
    return warnings


def load_settings_and_warnings(repo: str | os.PathLike[str] | None = None,
                               **overrides: object) -> tuple[Settings, list[str]]:
    """Settings, and one warning line per value a repo's `.env` tried to loosen (ignored). A bad value anywhere is a
    one-line ConfigError naming the key and where it was set.

    `repo` is the repo smol works on (the CLI's `--repo`); None means the current directory.
    """
    loaded = _load(repo, overrides)
    return loaded[0], loaded[1]


def explain_settings(repo: str | os.PathLike[str] | None = None,
                     **overrides: object) -> tuple[list[tuple[str, Any, str]], list[str]]:
    """(KEY, effective value, where it came from) for every setting, and the warnings (`smol config`)."""
    settings, warnings, files, taken_from, taken = _load(repo, overrides)
    rows = []
    for key in Settings.model_fields:
        if key in overrides:
            source = "flag"
        elif key in taken:
            source = f"{taken_from[key]} (a repo file: tightens only)"
        elif key in settings.model_fields_set:
            source = _where(key, {}, files)
        else:
            source = "default"
        rows.append((key.upper(), getattr(settings, key), source))
    return rows, warnings


REPO_CONFIG_FILES = (".smol.toml", "pyproject.toml")
"""A repo's own settings, at its root: `.smol.toml` (a table of keys), or `[tool.smol]` in `pyproject.toml`."""


def _read_repo_toml(root: Path) -> tuple[dict[str, str], Path | None, list[str]]:
    """The smol keys of a repo's `.smol.toml` or `[tool.smol]` (untrusted, like its `.env`), the file, warnings."""
    import tomllib

    for name in REPO_CONFIG_FILES:
        path = root / name
        if not os.path.lexists(path):
            continue
        why = "in the repo smol works on"
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _REPO_FILE_LIMIT:
            return {}, None, [f"ignored {path} ({why}): not a regular file of at most 1 MiB"]
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            return {}, None, [f"ignored {path} ({why}): it is not valid TOML ({str(error).splitlines()[0]})"]
        table = data if name == ".smol.toml" else data.get("tool", {}).get("smol")
        if table is None:
            continue  # a pyproject.toml without [tool.smol]
        if not isinstance(table, dict):
            return {}, None, [f"ignored {path} ({why}): [tool.smol] is not a table"]
        values: dict[str, str] = {}
        warnings = [f"{problem} in {path} (ignored)" for problem in unknown_keys(list(table))]
        for key, value in table.items():
            if key.lower() not in Settings.model_fields:
                continue
            if isinstance(value, bool):
                values[key.lower()] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                values[key.lower()] = str(value)
            elif isinstance(value, list) and all(isinstance(item, str) for item in value):
                values[key.lower()] = ",".join(value)
            else:
                warnings.append(f"ignored {key} in {path}: expected a string, number, boolean or list of strings")
        return values, path, warnings
    return {}, None, []


def _from_environment(key: str) -> bool:
    return any(name.lower() == key for name in os.environ)


def _load(repo: str | os.PathLike[str] | None, overrides: dict[str, object]) \
        -> tuple[Settings, list[str], list[Path], dict[str, Path], dict[str, Any]]:
    """Precedence, highest first: flags, the environment, the repo's own files (which may only tighten what
    contains the sandbox), the user's config file, a trusted `.env`, defaults."""
    from runner.gitroot import find_root

    warnings: list[str] = []
    trusted_files: list[Path] = []
    # key -> (raw value, the repo file that set it, why that file is the repo's)
    repo_values: dict[str, tuple[str, Path, str]] = {}
    try:
        root = find_root(Path(repo) if repo is not None else Path.cwd())[0]
        toml_values, toml_file, toml_warnings = _read_repo_toml(root)
    except OSError:  # the current directory was removed
        toml_values, toml_file, toml_warnings = {}, None, []
    warnings += toml_warnings
    if toml_file is not None:
        repo_values.update({key: (raw, toml_file, "in the repo smol works on") for key, raw in toml_values.items()})
    try:
        cwd_env: Path | None = Path.cwd() / ".env"
    except OSError:
        cwd_env = None
    if cwd_env is not None and os.path.lexists(cwd_env):
        why = _repo_owned(cwd_env, repo)
        if why is None:
            trusted_files.append(cwd_env)
        else:
            env_values, env_warnings = _read_repo_file(cwd_env, why)
            warnings += env_warnings
            warnings += [f"{problem} in {cwd_env} (ignored)" for problem in _repo_unknown(cwd_env)]
            repo_values.update({key: (raw, cwd_env, why) for key, raw in env_values.items()})  # .env wins
    user_config = user_config_path()
    if user_config is not None:
        trusted_files.append(user_config)  # after the `.env`: the later file wins

    _check_file_keys(trusted_files)
    warnings += environment_warnings()
    settings = _build(trusted_files, overrides)
    pending = {key: value for key, value in repo_values.items()
               if key not in overrides and not _from_environment(key)}
    taken: dict[str, Any] = {}
    taken_from: dict[str, Path] = {}
    for repo_file in sorted({where for _, where, _ in pending.values()}):
        values = {key: raw for key, (raw, where, _) in pending.items() if where == repo_file}
        candidate = _build(trusted_files, {**overrides, **values}, where=str(repo_file))
        instead = f"the environment or in {user_config or '~/.config/smol/config.env'}"
        for key, raw in values.items():
            new, old = getattr(candidate, key), getattr(settings, key)
            rule = REPO_FILE_RULES.get(key, (FIXED, ""))[0]
            if _may_replace(rule, new, old):
                if new != old:
                    taken[key], taken_from[key] = new, repo_file
                continue
            warnings.append(f"ignored {key.upper()}={raw!r} from {repo_file} ({pending[key][2]}): {_ONLY[rule]}; "
                            f"set it in {instead}")
    if taken:
        settings = settings.model_copy(update=taken)
        log.debug("taken from the repo's files (tightening only): %s", ", ".join(k.upper() for k in taken))

    if settings.sandbox_disk >= settings.sandbox_memory:
        origin = [f"{key.upper()} set in {taken_from[key]}" for key in ("sandbox_memory", "sandbox_disk")
                  if key in taken]
        raise ConfigError(
            "SANDBOX_DISK must be below SANDBOX_MEMORY (the sandbox's writes are kept in memory); "
            "lower SANDBOX_DISK or raise SANDBOX_MEMORY" + (f" ({' and '.join(origin)})" if origin else "")
        )
    return settings, warnings, trusted_files, taken_from, taken


def load_settings(repo: str | os.PathLike[str] | None = None, **overrides: object) -> Settings:
    """Settings (see load_settings_and_warnings); the warnings go to the log."""
    settings, warnings = load_settings_and_warnings(repo, **overrides)
    for warning in warnings:
        log.warning("%s", warning)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
