"""Warm spares: the first half of an overlay sandbox, made ahead of time when another sandbox is known to follow.

An overlay sandbox needs two container starts in a row: the keeper, whose start mounts the tmpfs volume that will
hold the overlay's upper layer, and then the box, whose overlay mount needs that layout. A spare is a tmpfs volume
already held by its running keeper, so a sandbox that takes one starts a single container. Callers ask for a spare
when they know another sandbox follows (the re-verification after `smol run`, the next task of a batch); nothing
makes one by default.

A spare holds no repo data (an empty tmpfs), carries the usual labels (so `smol gc` finds it after a crash) and is
removed at exit when nobody took it. This module knows nothing of Docker: it keeps futures of whatever the sandbox
makes and hands them back, so it stays testable without an engine.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

SpareT = TypeVar("SpareT")

TAKE_WAIT_S = 120.0
"""How long a taker waits for a spare still being made; it was started earlier, so it is never slower to wait."""


@dataclass(frozen=True)
class SpareKey:
    """What makes a spare fit a sandbox: the engine, the image and the tmpfs volume's owner and size."""

    engine: str
    image: str
    uid: int
    gid: int
    disk: int


class SparePool(Generic[SpareT]):
    """Futures of spares by key; a spare is made on a background thread and handed out at most once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[SpareKey, list[tuple[Future[SpareT], Callable[[SpareT], None]]]] = {}
        self._closed = False

    def prepare(self, key: SpareKey, make: Callable[[], SpareT], discard: Callable[[SpareT], None]) -> bool:
        """Start making one spare for `key` unless one is already there or on its way. True when one was started."""
        with self._lock:
            if self._closed or self._futures.get(key):
                return False
            future: Future[SpareT] = Future()
            self._futures.setdefault(key, []).append((future, discard))
        thread = threading.Thread(target=_fulfil, args=(future, make), name="smol-spare", daemon=True)
        thread.start()
        return True

    def take(self, key: SpareKey) -> SpareT | None:
        """A spare for `key`, waiting for one that is being made; None when there is none or making it failed."""
        with self._lock:
            futures = self._futures.get(key)
            if not futures:
                return None
            future, discard = futures.pop(0)
        try:
            return future.result(timeout=TAKE_WAIT_S)
        except BaseException as error:
            # Given up on (timeout, Ctrl-C): whatever is made later must still be removed, by its own callback.
            future.add_done_callback(lambda done: discard(done.result()) if done.exception() is None else None)
            if not isinstance(error, Exception):
                raise
            log.debug("no spare: %s", error)
            return None

    def settle(self, timeout: float = TAKE_WAIT_S) -> None:
        """Wait until no spare is being made (made or failed), e.g. before measuring a start that takes one."""
        from concurrent.futures import wait

        with self._lock:
            futures = [future for pending in self._futures.values() for future, _ in pending]
        wait(futures, timeout=timeout)

    def pending(self) -> int:
        with self._lock:
            return sum(len(futures) for futures in self._futures.values())

    def drain(self) -> int:
        """Remove every spare nobody took (waiting for those being made). Returns how many were removed."""
        with self._lock:
            futures = [entry for pending in self._futures.values() for entry in pending]
            self._futures.clear()
        removed = 0
        for future, discard in futures:
            try:
                spare = future.result(timeout=TAKE_WAIT_S)
            except Exception as error:  # noqa: BLE001 - nothing was made, nothing to remove
                log.debug("spare never made: %s", error)
                continue
            try:
                discard(spare)
                removed += 1
            except Exception as error:  # noqa: BLE001 - at exit; `smol gc` takes what is left
                log.warning("could not remove a spare sandbox volume: %s (run `smol gc`)", error)
        return removed

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.drain()


def _fulfil(future: Future[SpareT], make: Callable[[], SpareT]) -> None:
    try:
        future.set_result(make())
    except BaseException as error:  # noqa: BLE001 - handed to the taker, who falls back
        future.set_exception(error)


POOL: SparePool[object] = SparePool()
atexit.register(POOL.close)
