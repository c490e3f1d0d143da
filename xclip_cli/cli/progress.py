"""Progress of a scan on stderr: a Rich bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from xclip_cli.results import VideoResult

LOG_EVERY_SECONDS = 10.0  # plain log lines when stderr is not a terminal


def report_lines(result: VideoResult) -> list[str]:
    """What stderr says about one video: its error, or the warnings it classified with."""
    if not result.ok:
        return [f"xclip: error: {result.path}: {result.error}"]
    return [f"xclip: warning: {result.path}: {warning}" for warning in result.warnings]


class ScanProgress:
    """Counts finished videos; shows done/total, videos/s, ETA and failures so far."""

    def __init__(self, total: int, skipped: int = 0, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.total = total
        self.skipped = skipped
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.done = self.failed = self.warned = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ScanProgress:
        if not self.quiet and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[failures]}"),
                console=Console(file=self.stream),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("Scanning", total=self.total, rate="", failures="")
        return self

    def update(self, result: VideoResult) -> None:
        self.done += 1
        self.failed += not result.ok
        self.warned += bool(result.warnings)
        for message in [] if self.quiet else report_lines(result):
            if self._bar is not None:
                self._bar.console.print(message, markup=False, highlight=False, soft_wrap=True)
            else:
                print(message, file=self.stream, flush=True)
        if self._bar is not None:
            failures = f"[red]{self.failed} failed" if self.failed else ""
            self._bar.update(self._task, advance=1, rate=f"{self.rate:.2f} videos/s", failures=failures)
        elif not self.quiet and time.monotonic() - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = time.monotonic()
            self._log(self.line())

    def grow(self, count: int) -> None:
        """``count`` more videos to do (they arrived in a watched folder)."""
        self.total += count
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``120/1000 videos, 3 failed, 2.10 videos/s, about 7 min left``."""
        text = f"{self.done}/{self.total} videos, {self.failed} failed, {self.rate:.2f} videos/s"
        if self.rate > 0 and self.done < self.total:
            text += f", about {_duration((self.total - self.done) / self.rate)} left"
        return text

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        text = f"{self.done - self.failed} ok, {self.failed} failed"
        if self.warned:
            text += f", {self.warned} with warnings"
        if self.skipped:
            text += f", {self.skipped} already done"
        return f"{text} in {_duration(elapsed)}"

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc_info)
        # Stopped by an error before any result: the error line alone says what happened.
        if not self.quiet and (exc_info[0] is None or self.done):
            self._log(self.summary())

    def _log(self, text: str) -> None:
        print(f"xclip: {text}", file=self.stream, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
