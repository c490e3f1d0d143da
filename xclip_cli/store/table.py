"""Append-only CSV files that a kill leaves valid: the resume state of scan, eval and index.

A ``Schema`` says what such a file holds: its columns (and those of older versions), and the
settings its rows record, which a rerun must share (``store.settings``).

Rows are appended and flushed one at a time; a process killed mid-row leaves a last row
without its end, which readers ignore and the next writer trims before appending. File
names that are not UTF-8 go through as their bytes (surrogateescape).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xclip_cli.errors import UsageError
from xclip_cli.store.atomic import write_text_atomic
from xclip_cli.store.settings import Setting, refuse_other_settings


def complete_lines(path: Path, quoted: bool = True) -> list[str]:
    """The file's lines up to the end of its last complete row (``quoted``: CSV rows, else one
    line each, as JSONL); the file is not changed."""
    data = path.read_bytes()
    text = data[: complete_end(data, quoted)].decode("utf-8", "surrogateescape")
    return text.splitlines(keepends=True)


def complete_end(data: bytes, quoted: bool = True) -> int:
    """Where the last complete row ends: after its newline. ``quoted`` (CSV): a newline inside a
    quoted cell (a file name may hold one) ends no row, so a row cut off there is left out too;
    a quote inside a cell is written doubled, so quotes are balanced exactly at a row's end."""
    if not quoted:
        return data.rfind(b"\n") + 1
    end = balanced = 0
    start = 0
    while (newline := data.find(b"\n", start)) != -1:
        balanced ^= data.count(b'"', start, newline) & 1
        start = newline + 1
        if not balanced:
            end = start
    return end


def read_rows(path: Path) -> tuple[tuple[str, ...], list[list[str]]]:
    """(header, rows) of the complete rows; rows with another number of cells are skipped."""
    reader = csv.reader(complete_lines(path))
    header = tuple(next(reader, ()))
    return header, [row for row in reader if len(row) == len(header)]


def trim_partial_line(path: Path, quoted: bool = True) -> None:
    """Drop a last row cut off mid-write (``quoted``: CSV rows, which may span lines; else one
    line each, as JSONL), so appending continues a valid file."""
    data = path.read_bytes()
    end = complete_end(data, quoted)
    if end < len(data):
        with open(path, "r+b") as handle:
            handle.truncate(end)


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


@dataclass(frozen=True)
class Schema:
    """A resumable CSV: what it is (``kind``, for messages), its ``columns`` (version
    ``len(older) + 1``), the headers of its ``older`` versions, and the ``settings`` its rows
    record. Adding a column is one edit here (and a value where rows are made)."""

    kind: str
    columns: tuple[str, ...]
    settings: tuple[Setting, ...] = ()
    older: tuple[tuple[str, ...], ...] = ()
    # Older versions' rows are read with their new columns empty (else they are refused), and
    # ``upgrade`` brings such a file to this version before rows are appended.
    reads_older: bool = False

    @property
    def version(self) -> int:
        return len(self.older) + 1

    def records(self, path: Path) -> list[dict[str, str]]:
        """The complete rows of ``path`` by column (none for a missing or empty file); a file of
        an older version or of something else is refused in one line."""
        if not has_rows_or_header(path):
            return []
        header, rows = read_rows(path)
        if header in self.older and not self.reads_older:
            raise UsageError(f"{path}: written by an older xclip-cli (other columns); use --overwrite or another -o")
        if header != self.columns and header not in self.older:
            raise UsageError(f"{path}: not an {self.kind} (unexpected header); use --overwrite or another -o")
        if header == self.columns:
            return [dict(zip(header, row, strict=True)) for row in rows]
        empty = dict.fromkeys(self.columns, "")
        return [empty | dict(zip(header, row, strict=True)) for row in rows]

    def rows(self, path: Path) -> list[list[str]]:
        """``records`` as lists in this version's column order (no dict per row: large tables)."""
        if has_rows_or_header(path):
            header, rows = read_rows(path)
            if header == self.columns:
                return rows
        return [self.row(record) for record in self.records(path)]

    def upgrade(self, path: Path) -> None:
        """Rewrite a file of an older version (``reads_older``) in this version, atomically."""
        if has_rows_or_header(path) and read_rows(path)[0] != self.columns:
            self.rewrite(path, self.records(path))

    def rewrite(self, path: Path, records: Sequence[Mapping[str, Any]]) -> None:
        """Replace ``path`` with ``records`` under this version's header, atomically."""
        write_table_atomic(path, self.columns, [self.row(record) for record in records])

    def resume(self, path: Path, run: Mapping[str, str]) -> list[dict[str, str]]:
        """``records``, refused in one line if any was made otherwise than ``run``."""
        records = self.records(path)
        refuse_other_settings(path, records, self.settings, run)
        return records

    def row(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[column] for column in self.columns]

    def appender(self, path: Path, durable: bool = False) -> AppendOnlyCsv:
        return AppendOnlyCsv(path, self.columns, durable=durable)


def write_table_atomic(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Replace ``path`` with a CSV of ``header`` and ``rows``, atomically (a rerun that drops or
    upgrades rows never leaves half a file)."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())
