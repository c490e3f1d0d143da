"""Append-only CSV files that a kill leaves valid: the resume state of scan, eval and index.

Rows are appended and flushed one at a time; a process killed mid-row leaves a last line
without its newline, which readers ignore and the next writer trims before appending. File
names that are not UTF-8 go through as their bytes (surrogateescape).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def complete_lines(path: Path) -> list[str]:
    """The file's lines up to its last newline; the file itself is not changed."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    return text[: text.rfind("\n") + 1].splitlines(keepends=True)


def read_rows(path: Path) -> tuple[tuple[str, ...], list[list[str]]]:
    """(header, rows) of the complete lines; rows with another number of cells are skipped."""
    reader = csv.reader(complete_lines(path))
    header = tuple(next(reader, ()))
    return header, [row for row in reader if len(row) == len(header)]


def trim_partial_line(path: Path) -> None:
    """Drop a last line cut off mid-write, so appending continues a valid file."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def has_rows_or_header(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


class AppendOnlyCsv:
    """Appends rows to ``path``: a new file starts with ``header``; an existing one is trimmed of
    a cut-off row and continued (its header is the caller's to check first). ``durable``:
    fsync after each write, for state that other files' contents depend on (an index)."""

    def __init__(self, path: Path, header: Sequence[str], durable: bool = False) -> None:
        existing = has_rows_or_header(path)
        if existing:
            trim_partial_line(path)
        self.durable = durable
        self.handle = open(path, "a", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115
        self.writer = csv.writer(self.handle)
        if not existing:
            self.write_rows([header])

    def write_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        self.writer.writerows(rows)
        self.handle.flush()
        if self.durable:
            os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> AppendOnlyCsv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
