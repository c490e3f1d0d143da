"""Batch scans (``scan_videos``): classify many videos into a results file that a rerun resumes.

The file is locked for the run, its rows read back (``store.results_file``) and checked against
this run's settings before anything loads; each finished row is appended and flushed before the
next video starts. Finding the videos and sharding them is ``media.discovery``'s.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

from xclip_cli.errors import UsageError
from xclip_cli.jobs.tagging import tags_digest
from xclip_cli.labels import LabelSet
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import Tally, VideoResult
from xclip_cli.store.locks import exclusive
from xclip_cli.store.results_file import Earlier, ResultRows, RunSettings, drop_rows, read_earlier, video_identity

if TYPE_CHECKING:
    from xclip_cli.jobs.classify import Executor
    from xclip_cli.media.watch import Arrived


@dataclass(frozen=True)
class ScanPlan:
    """The videos of a scan and those still to do (after resuming ``output``)."""

    paths: tuple[str, ...]
    todo: tuple[str, ...]
    appending: bool  # the output holds earlier rows: continue it
    rows: frozenset[str] = frozenset()  # the videos (identities) whose earlier rows stay in the output
    failed_rows: frozenset[str] = frozenset()  # ... of which errors (not retried): the exit code says they remain
    retried: int = 0  # error rows of earlier runs removed to be done again (--retry-failed)

    @property
    def kept(self) -> int:
        """Rows of earlier runs that stay in the output."""
        return len(self.rows)

    @property
    def kept_failed(self) -> int:
        return len(self.failed_rows)

    @property
    def skipped(self) -> int:
        return len(self.paths) - len(self.todo)


def plan_scan(
    paths: Sequence[str],
    output: Path | None,
    settings: RunSettings,
    fmt: str,
    overwrite: bool = False,
    retry_failed: bool = False,
) -> ScanPlan:
    """What a scan of ``paths`` into ``output`` (written as ``fmt``) still has to do; refuses
    (``UsageError``) an output made with other settings or in the other format.

    ``retry_failed``: the videos of ``paths`` whose earlier row is an error are done again, and
    those rows are removed from ``output`` first (atomically), so each video keeps one row.
    Call while holding ``locks.exclusive(output)``: the plan is only true while no one else
    writes the file."""
    earlier = Earlier() if overwrite or output is None else read_earlier(output, settings, fmt)
    identities = {path: video_identity(path) for path in paths}
    retried = earlier.failed & set(identities.values()) if retry_failed else frozenset()
    if output is not None and retried:
        drop_rows(output, retried, fmt)
    done = earlier.done - retried
    todo = tuple(path for path in paths if identities[path] not in done)
    return ScanPlan(
        tuple(paths), todo, appending=bool(done) or (output is not None and retried != frozenset()),
        rows=frozenset(done), failed_rows=frozenset(earlier.failed - retried), retried=len(retried),
    )  # fmt: skip


# --- the scan itself --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanOptions:
    """Where a scan writes and how it resumes (``scan_videos``)."""

    output: Path | None = None  # the results file; None: rows go to the stream given to scan_videos
    fmt: str = "csv"  # csv | jsonl
    overwrite: bool = False  # start the file afresh instead of resuming it
    retry_failed: bool = False  # classify again the videos whose earlier row is an error
    thumbnails: Path | None = None  # keep each video's thumbnails here (the HTML report's store)
    classify: ClassifyOptions = ClassifyOptions()
    reclassify_changed: bool = False  # watching: a file written again replaces its video's row

    def __post_init__(self) -> None:
        if self.fmt not in ("csv", "jsonl"):
            raise UsageError(f"a scan writes csv or jsonl, not {self.fmt}")
        if self.reclassify_changed and self.output is None:
            raise UsageError("--reclassify-changed replaces rows of an -o results file: name it with -o")
        if self.retry_failed and (self.overwrite or self.output is None):
            how = "--overwrite starts it afresh: give one of them" if self.overwrite else "name the file with -o"
            raise UsageError(f"--retry-failed redoes the error rows of an -o results file; {how}")


@dataclass(frozen=True)
class ScanSummary:
    """What a scan did, and what its results file holds (for the exit code)."""

    plan: ScanPlan
    done: int  # videos classified by this run
    failed: int  # ... of which errors
    replaced: int = 0  # rows (earlier runs' or this run's) replaced by a new row (reclassify_changed)
    replaced_failed: int = 0  # ... of which error rows

    @property
    def counts(self) -> Tally:
        """Every row the file holds now that this run wrote or kept, errors included."""
        return Tally(
            done=self.done + self.plan.kept - self.replaced,
            failed=self.failed + self.plan.kept_failed - self.replaced_failed,
        )


def scan_videos(
    paths: Sequence[str],
    labelset: LabelSet,
    executor: Executor,
    options: ScanOptions = ScanOptions(),
    *,
    stream: TextIO | None = None,
    on_plan: Callable[[ScanPlan], None] | None = None,
    on_result: Callable[[VideoResult], None] | None = None,
    arrivals: Iterable[Arrived] | None = None,
    on_arrival: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
) -> ScanSummary:
    """Classify ``paths`` into ``options.output``, resuming it: each finished row is appended
    and flushed before the next video starts, so a kill loses nothing and a rerun goes on.

    The file is locked for the whole run (``locks.Busy`` if another process writes it), checked
    against this run's settings (``UsageError`` if its rows were made otherwise) and planned
    before anything loads (``on_plan`` hears the plan); ``on_result`` hears each result as it
    is written. ``stream``: where rows go without ``options.output``.

    Watching (``media.watch.arrivals``): after ``paths``, each batch of ``arrivals`` is
    classified in turn, but for the videos the file already holds or this run has seen
    (``on_arrival`` hears how many are new); with ``options.reclassify_changed`` a video whose
    file was written again is classified again, its new row (with a warning that says so)
    replacing the old one. ``stop`` set ends the scan between two videos, as finished as any.
    """
    output, classify = options.output, options.classify
    settings = RunSettings(
        executor.model, labelset.name, labelset.digest, classify.views, classify.top_k, len(labelset),
        executor.precision, classify.sampling, classify.multi_label,
        tags_digest(labelset) if classify.multi_label else "",
    )  # fmt: skip
    with exclusive(output), exclusive(options.thumbnails):
        plan = plan_scan(paths, output, settings, options.fmt, options.overwrite, options.retry_failed)
        if not plan.todo and arrivals is None and (output is None or output.exists()):
            if on_plan is not None:
                on_plan(plan)
            return ScanSummary(plan, 0, 0)
        # The model loads (or the cluster starts) here, so its errors come before any progress.
        results = executor.classify(plan.todo, labelset, classify) if plan.todo else iter(())
        if on_plan is not None:
            on_plan(plan)
        from xclip_cli.media.thumbnails import ThumbnailStore  # numpy and Pillow: only with a report

        store = ThumbnailStore(options.thumbnails, options.overwrite) if options.thumbnails is not None else None
        done = failed = 0
        with contextlib.ExitStack() as stack:
            if store is not None:
                stack.callback(store.close)
            written = _Written(output, stream or sys.stdout, options.fmt, classify.top_k, plan)
            stack.callback(written.close)
            if arrivals is not None:
                seen = set(plan.rows) | {video_identity(path) for path in plan.todo}
                later = _arrived(
                    arrivals, seen, lambda new: executor.classify(new, labelset, classify), on_arrival,
                    written.drop if options.reclassify_changed else None,
                )  # fmt: skip
                results = itertools.chain(results, later)
            for named in results:
                result = replace(named, resolved_path=video_identity(named.path))
                written.write(result)
                if store is not None:
                    store.add(result.path, result.thumbnails)
                done, failed = done + 1, failed + (not result.ok)
                if on_result is not None:
                    on_result(result)
                if stop is not None and stop.is_set():
                    break
    return ScanSummary(plan, done, failed, written.replaced, written.replaced_failed)


class _Written:
    """The results file (or stream) as a scan writes it: each row appended and flushed; a
    video's row replaced (``drop``: removed atomically, then the file opened again to append)."""

    def __init__(self, output: Path | None, stream: TextIO, fmt: str, top_k: int, plan: ScanPlan) -> None:
        self.output, self.stream, self.fmt, self.top_k = output, stream, fmt, top_k
        self.ok = {identity: identity not in plan.failed_rows for identity in plan.rows}  # the file's rows
        self.replaced = self.replaced_failed = 0
        # A new file, or one whose rows all go (--overwrite): written afresh; else continued.
        self._open(appending=plan.appending)

    def _open(self, appending: bool) -> None:
        self.sink = self.stream
        if self.output is not None:
            mode = "a" if appending else "w"
            opened = open(self.output, mode, encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
            self.sink = cast(TextIO, opened)
        self.rows = ResultRows(self.sink, self.fmt, self.top_k, appending)

    def write(self, result: VideoResult) -> None:
        self.rows.write(result)
        self.ok[result.resolved_path or result.path] = result.ok

    def drop(self, identity: str) -> None:
        """Remove ``identity``'s row before its new one is written (to a stream: nothing to remove)."""
        if self.output is None or identity not in self.ok:
            return
        self.sink.close()
        drop_rows(self.output, frozenset({identity}), self.fmt)
        self._open(appending=True)
        self.replaced += 1
        self.replaced_failed += not self.ok.pop(identity)

    def close(self) -> None:
        if self.sink is not self.stream:
            self.sink.close()


AGAIN = "classified again: the file was written after its earlier row"


def _arrived(
    batches: Iterable[Arrived],
    seen: set[str],
    classify: Callable[[list[str]], Iterator[VideoResult]],
    on_arrival: Callable[[int], None] | None,
    drop: Callable[[str], None] | None,
) -> Iterator[VideoResult]:
    """The results of each batch's videos not ``seen`` before (``seen`` grows with them); with
    ``drop``, also of those seen whose file was written again, each row replacing the old one."""
    for batch in batches:
        new, again = [], []
        for path in batch.paths:
            identity = video_identity(path)
            if identity not in seen:
                seen.add(identity)
                new.append(path)
            elif drop is not None and path in batch.written:
                again.append(path)
        if new or again:
            if on_arrival is not None:
                on_arrival(len(new) + len(again))
            if new:
                yield from classify(new)
            if drop is not None:
                yield from _again(again, classify, drop)


def _again(
    paths: list[str], classify: Callable[[list[str]], Iterator[VideoResult]], drop: Callable[[str], None]
) -> Iterator[VideoResult]:
    """Each path classified again, one at a time: its old row goes just before the new one comes
    (a kill between the two leaves it without a row, and the rerun classifies it)."""
    for path in paths:
        for result in classify([path]):
            drop(video_identity(path))
            yield replace(result, warnings=(*result.warnings, AGAIN))
