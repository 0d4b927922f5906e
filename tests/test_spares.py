"""Warm spares: the pool's rules on its own, then spares made and taken on the real engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.sandbox import SandboxMode
from runner.sandbox.spares import SpareKey, SparePool
from tests.conftest import list_containers

KEY = SpareKey("unix://engine", "image:tag", 1000, 1000, 1 << 30)


def test_pool_hands_out_each_spare_once_and_discards_the_rest() -> None:
    pool: SparePool[str] = SparePool()
    discarded: list[str] = []
    assert pool.take(KEY) is None
    assert pool.prepare(KEY, lambda: "spare-1", discarded.append)
    assert not pool.prepare(KEY, lambda: "spare-2", discarded.append), "one spare per key is enough"
    assert pool.take(KEY) == "spare-1"
    assert pool.take(KEY) is None
    other = SpareKey("unix://engine", "image:tag", 1001, 1001, 1 << 30)
    assert pool.prepare(other, lambda: "spare-3", discarded.append)
    assert pool.take(KEY) is None, "a spare for another uid does not fit"
    assert pool.drain() == 1
    assert discarded == ["spare-3"]
    assert pool.pending() == 0


def test_a_taker_waits_for_a_spare_still_being_made() -> None:
    pool: SparePool[str] = SparePool()
    release = threading.Event()

    def slow() -> str:
        release.wait(10)
        return "spare"

    assert pool.prepare(KEY, slow, lambda spare: None)
    threading.Timer(0.2, release.set).start()
    assert pool.take(KEY) == "spare"


def test_a_failed_spare_means_none_and_a_closed_pool_makes_no_more() -> None:
    pool: SparePool[str] = SparePool()

    def broken() -> str:
        raise RuntimeError("engine gone")

    assert pool.prepare(KEY, broken, lambda spare: None)
    assert pool.take(KEY) is None
    pool.close()
    assert not pool.prepare(KEY, lambda: "late", lambda spare: None)


def test_a_spare_given_up_on_is_still_discarded(monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.sandbox import spares

    monkeypatch.setattr(spares, "TAKE_WAIT_S", 0.05)
    pool: SparePool[str] = SparePool()
    release = threading.Event()
    discarded: list[str] = []
    assert pool.prepare(KEY, lambda: (release.wait(10), "late")[1], discarded.append)
    assert pool.take(KEY) is None  # timed out
    release.set()
    deadline = time.monotonic() + 5
    while not discarded and time.monotonic() < deadline:
        time.sleep(0.01)
    assert discarded == ["late"]


def spare_keepers(docker_client: Any, exclude: set[str]) -> list[Any]:
    from runner.sandbox.labels import OWNER, owner_label

    keepers = list_containers(docker_client, {"label": ["smol.role=keeper", f"{OWNER}={owner_label()}"]})
    return [keeper for keeper in keepers if keeper.labels["smol.sandbox"] not in exclude]


def wait_for_spare(docker_client: Any, exclude: set[str]) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        keepers = spare_keepers(docker_client, exclude)
        if keepers and keepers[0].status == "running":
            return keepers[0]
        time.sleep(0.1)
    pytest.fail("no spare keeper came up")


def test_next_sandbox_starts_on_the_spare(make_repo: Callable[..., Path], open_sandbox: Callable[..., Any],
                                          docker_client: Any) -> None:
    repo = make_repo()
    first = open_sandbox(repo)
    assert not first.warm_spare
    assert first.prepare_spare()
    keeper = wait_for_spare(docker_client, {first.session})
    spare_session = keeper.labels["smol.sandbox"]
    second = open_sandbox(repo)
    assert second.warm_spare and second.session == spare_session
    assert second.info.mode is SandboxMode.OVERLAY
    # The spare's keeper now holds the second sandbox's overlay: writes there are its own, not the first's.
    assert second.exec("echo warm >> README.md && echo new > added.txt").ok
    assert b"+warm" in second.diff() and b"added.txt" in second.diff()
    assert first.diff() == b""
    assert second.read("notes.txt") == b"untracked note\n"
    session = {"label": f"smol.sandbox={spare_session}"}
    assert len(docker_client.containers.list(all=True, filters=session)) == 2
    second.close()
    assert docker_client.containers.list(all=True, filters=session) == []
    assert docker_client.volumes.list(filters=session) == []


def test_a_stale_spare_is_dropped_and_the_sandbox_starts_anyway(make_repo: Callable[..., Path],
                                                                open_sandbox: Callable[..., Any],
                                                                docker_client: Any) -> None:
    repo = make_repo()
    first = open_sandbox(repo)
    assert first.prepare_spare()
    keeper = wait_for_spare(docker_client, {first.session})
    stale = keeper.labels["smol.sandbox"]
    keeper.remove(force=True)
    second = open_sandbox(repo)
    assert not second.warm_spare and second.session != stale
    assert second.info.mode is SandboxMode.OVERLAY
    assert second.exec("echo ok > x.txt").ok and b"x.txt" in second.diff()
    assert docker_client.volumes.list(filters={"label": f"smol.sandbox={stale}"}) == []


def test_an_unused_spare_is_removed_by_drain(make_repo: Callable[..., Path], open_sandbox: Callable[..., Any],
                                             docker_client: Any) -> None:
    from runner.sandbox.spares import POOL

    repo = make_repo()
    first = open_sandbox(repo)
    assert first.prepare_spare()
    assert not first.prepare_spare(), "one spare is on its way already"
    stale = wait_for_spare(docker_client, {first.session}).labels["smol.sandbox"]
    assert POOL.drain() == 1
    assert docker_client.containers.list(all=True, filters={"label": f"smol.sandbox={stale}"}) == []
    assert docker_client.volumes.list(filters={"label": f"smol.sandbox={stale}"}) == []


def test_no_spare_where_overlay_mode_is_not_used(make_repo: Callable[..., Path],
                                                 open_sandbox: Callable[..., Any]) -> None:
    sandbox = open_sandbox(make_repo(), sandbox_mode="copy")  # copy mode: a spare cannot serve it
    assert sandbox.info.mode is SandboxMode.COPY
    assert not sandbox.prepare_spare()
