"""Watched folders (``scan --watch``): video files that arrive, handed on once they are complete.

A file is complete when its size and modification time have stayed the same for the settle
time: a copy in progress keeps changing both, so it is never read half written (the OS's
close-after-write event is not offered by every platform's watcher, so the settle time is the
one rule everywhere); an empty file waits for its first bytes. Events come from
``watchfiles`` (inotify, FSEvents, ReadDirectoryChanges), or from polling the folders
(``poll``: network filesystems, where no events arrive). A file deleted or renamed before it
settles is dropped without an error; a folder moved in is looked inside; a file name the
watcher cannot decode makes it listen (and list the folders) again. ``scan_videos``
(``jobs.scan``) takes the batches ``arrivals`` yields and classifies each file it has no row for.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from xclip_cli.errors import UsageError

SETTLE = 5.0  # seconds, by default, a file's size and modification time must stay the same


@dataclass(frozen=True)
class WatchOptions:
    """How a watched scan decides that a file is complete, and how it hears of files."""

    settle: float = SETTLE  # seconds a file's size and modification time must stay the same
    poll: bool = False  # stat the folders every tick instead of the OS's events (network filesystems)
    tick: float = 0.5  # seconds between looks at the files still settling

    def __post_init__(self) -> None:
        for name, value in (("--settle", self.settle), ("the watch tick", self.tick)):
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"{name} {value:g}: expected a positive number of seconds")


@dataclass(frozen=True)
class Arrived:
    """Files that are complete now; ``written``: those the OS reported written since the watch
    began (the others were found by listing the folders): only these can be a replaced file."""

    paths: tuple[str, ...]
    written: frozenset[str] = frozenset()


class Settling:
    """Files heard of, until each has kept its size and modification time for ``settle``
    seconds of ``clock``; ``due`` hands those over, once each."""

    def __init__(self, settle: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle, self.clock = settle, clock
        self.pending: dict[str, tuple[tuple[int, int], float]] = {}  # path -> (size, mtime), since
        self.written: set[str] = set()  # of the pending, those heard of through a write

    def saw(self, path: str, written: bool = False) -> None:
        """``path`` changed (or is new): it settles from now, unless it has not changed at all.
        ``written``: the OS reported a write to it (not a listing that found it)."""
        signature = _signature(path)
        if signature is None:
            self.pending.pop(path, None)  # gone again: nothing to do
            self.written.discard(path)
            return
        if path not in self.pending or self.pending[path][0] != signature:
            self.pending[path] = (signature, self.clock())
        if written:
            self.written.add(path)

    def arrived(self) -> Arrived:
        """``due``'s files, with those that were written."""
        ready = self.due()
        written = frozenset(path for path in ready if path in self.written)
        self.written -= written
        return Arrived(tuple(ready), written)

    def due(self) -> list[str]:
        """The files that have settled now (sorted), no longer pending; files that changed
        start settling again, files that are gone are dropped."""
        now, ready = self.clock(), []
        for path, (signature, since) in list(self.pending.items()):
            current = _signature(path)
            if current is None:
                del self.pending[path]
                self.written.discard(path)
            elif current != signature:
                self.pending[path] = (current, now)
            elif now - since >= self.settle and current[0] > 0:  # an empty file waits for its data
                del self.pending[path]
                ready.append(path)
        return sorted(ready)


def _signature(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns) if os.path.isfile(path) else None


def recently_changed(paths: Iterable[str], settle: float, now: float | None = None) -> list[str]:
    """Of files found when the watch starts, those modified in the last ``settle`` seconds (by
    the wall clock, as modification times are): they may still be being written, so they
    settle like new arrivals instead of being read at once."""
    now = time.time() if now is None else now
    recent = []
    for path in paths:
        with_time = _signature(path)
        if with_time is not None and now - with_time[1] / 1e9 < settle:
            recent.append(path)
    return recent


def arrivals(
    roots: Iterable[str],
    name: Callable[[str], str | None],
    options: WatchOptions,
    stop: threading.Event,
    find: Callable[[], Iterable[str]],
    settling: Iterable[str] = (),
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Arrived]:
    """Batches of complete files under ``roots`` as they arrive, until ``stop`` is set.

    ``name`` (``media.discovery.watched``) gives a changed file's scan name, or None for a file
    the scan does not take; ``settling``: files already known that must settle first. Once the
    watcher listens, ``find`` lists the folders again: what arrived before it listened (while
    the files found at the start were classified) is handed on too; files the scan has rows
    for are its to skip."""
    pending = Settling(options.settle, clock)
    for path in settling:
        pending.saw(path)
    while not stop.is_set():
        try:
            yield from _watched(roots, name, options, stop, find, pending)
        except RuntimeError as exc:  # watchfiles cannot decode a file name (not UTF-8): listen again
            if "decode" not in str(exc).lower():
                raise


def _watched(
    roots: Iterable[str],
    name: Callable[[str], str | None],
    options: WatchOptions,
    stop: threading.Event,
    find: Callable[[], Iterable[str]],
    pending: Settling,
) -> Iterator[Arrived]:
    """``arrivals`` from one watcher: it lists the folders once it listens, then follows events."""
    from watchfiles import Change, watch

    tick = max(1, int(options.tick * 1000))
    changes_seen = watch(
        *roots, watch_filter=None, debounce=tick, step=min(50, tick), stop_event=stop, rust_timeout=tick,
        yield_on_timeout=True, force_polling=options.poll, poll_delay_ms=tick, recursive=True,
    )  # fmt: skip
    for listening, changes in enumerate(changes_seen):
        if not listening:
            for path in find():
                pending.saw(path)
        for change, path in changes:
            if change != Change.deleted and os.path.isdir(path):  # a folder moved in: no event for its files
                for folder, _, files in os.walk(path):
                    for inside in filter(None, (name(os.path.join(folder, file)) for file in files)):
                        pending.saw(inside)
                continue
            found = name(path)
            if found is not None and change != Change.deleted:
                pending.saw(found, written=True)
            elif found is not None:
                pending.saw(found)  # gone: dropped
        ready = pending.arrived()
        if ready.paths:
            yield ready
        if stop.is_set():
            return
