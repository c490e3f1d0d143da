"""Batch scans: find videos, split them into shards, and resume from earlier results.

Pure file-system and bookkeeping helpers; the CLI's ``scan`` command feeds their output to
``classify_videos`` and appends each finished row to the results file at once.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import OutputError, UsageError
from .writers import FORMULA_PREFIXES, csv_columns

VIDEO_EXTENSIONS = frozenset(
    {"mp4", "m4v", "mov", "mkv", "webm", "avi", "wmv", "flv", "mpg", "mpeg", "m2ts", "mts", "ts"}
    | {"3gp", "3g2", "ogv", "vob", "mxf", "gif"}
)


@dataclass(frozen=True)
class Shard:
    """Process only the paths whose stable hash falls in part ``index`` of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` with 0 <= i < n, e.g. ``0/4``."""
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise UsageError(f"--shard {text!r}: need 0 <= i < n")
        return cls(index, count)

    def __contains__(self, path: str) -> bool:
        # A hash of the path, not its position: shards stay the same when files are added.
        digest = hashlib.sha1(path.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def find_videos(
    roots: Iterable[str],
    *,
    recursive: bool = True,
    pattern: str | None = None,
    extensions: frozenset[str] = VIDEO_EXTENSIONS,
) -> Iterator[str]:
    """Video files under ``roots`` in a stable (sorted) order, by extension and glob.

    Directory symlinks are not followed (no loops); a root that is a file is yielded as is.
    ``pattern`` is matched against the path relative to its root (``**/*.mp4``, ``cam1/*``).
    """
    for root in roots:
        if os.path.isfile(root):
            yield root
            continue
        if not os.path.isdir(root):
            raise UsageError(f"{root}: no such folder")
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            if not recursive:
                dirs.clear()
            for name in sorted(files):
                path = os.path.join(folder, name)
                if _wanted(path, root, pattern, extensions):
                    yield path


def _wanted(path: str, root: str, pattern: str | None, extensions: frozenset[str]) -> bool:
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in extensions:
        return False
    if pattern is None:
        return True
    relative = os.path.relpath(path, root)
    # fnmatch's "*" crosses folders, so "**/*.mp4" also matches files at the top level.
    return fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, pattern.removeprefix("**/"))


def parse_extensions(text: str) -> frozenset[str]:
    """``"mp4, .MKV"`` -> {"mp4", "mkv"}."""
    extensions = frozenset(part.strip().lower().lstrip(".") for part in text.split(",") if part.strip())
    if not extensions:
        raise UsageError(f"--ext {text!r}: expected a comma list of extensions, e.g. mp4,mkv")
    return extensions


def read_path_list(lines: Iterable[str]) -> Iterator[str]:
    """Paths from a list file or stdin: one per line, exactly as written (blank lines skipped)."""
    for line in lines:
        path = line.rstrip("\r\n")
        if path.strip():
            yield path


@dataclass(frozen=True)
class RunSettings:
    """What a scan's rows depend on: a results file is resumed only by a run with the same."""

    model: str
    labelset: str
    labelset_digest: str
    views: int
    top_k: int
    num_labels: int

    def differences(self, record: dict[str, str]) -> str | None:
        """What ``record`` (a CSV row or JSONL record, as strings) was made with otherwise, or None."""
        if record.get("labelset_digest", "") == "":
            return "rows written by an older xclip-cli (no label-set digest)"
        if not same_model(record["model"], self.model):
            return f"--model {record['model']}, this run uses {self.model}"
        if record["labelset"] != self.labelset:
            return f"--labels {record['labelset']!r}, this run uses {self.labelset!r}"
        if record["labelset_digest"] != self.labelset_digest:
            digests = f"digest {record['labelset_digest']}, this run {self.labelset_digest}"
            return f"other prompts or templates for label set {self.labelset!r} ({digests})"
        if record["status"] != "ok":
            return None
        if record["views"] != str(self.views):
            return f"{record['views']} views per video (--clips x --crops), this run uses {self.views}"
        if "reported" in record and record["reported"] != str(min(self.top_k, self.num_labels)):
            return f"--top-k {record['reported']}, this run uses {self.top_k}"
        return None


def same_model(a: str, b: str) -> bool:
    """Two ``--model`` values name one checkpoint: equal ids, or one local folder written two ways."""
    if a == b:
        return True
    try:
        return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)
    except OSError:
        return False


def finished_paths(results: Path, settings: RunSettings | None = None) -> set[str]:
    """Paths already in a results file (CSV or JSONL), to skip when resuming.

    With ``settings``, a file whose rows were made otherwise (another label set, model, number
    of views or --top-k) is refused with ``UsageError`` and left untouched: appending would mix
    two experiments in one file. A row cut off by a kill is then trimmed, so appending continues
    a valid file.
    """
    if not results.exists() or results.stat().st_size == 0:
        return set()
    records = _jsonl_records(results) if results.suffix.lower() == ".jsonl" else _csv_records(results, settings)
    if settings is not None:
        for record in records:
            difference = settings.differences(record)
            if difference is not None:
                raise UsageError(f"{results}: made with {difference}; use --overwrite or another -o")
    trim_partial_line(results)
    return {record["path"] for record in records}


def _complete_lines(results: Path) -> list[str]:
    """The file's lines, without a last one cut off mid-write (the file itself is not changed)."""
    text = results.read_bytes().decode("utf-8", "surrogateescape")
    return text[: text.rfind("\n") + 1].splitlines(keepends=True)


def _csv_records(results: Path, settings: RunSettings | None) -> list[dict[str, str]]:
    reader = csv.reader(_complete_lines(results))
    header = tuple(next(reader, ()))
    expected = csv_columns(settings.top_k) if settings is not None else header
    if header != expected:
        ranked = [column for column in header if column.startswith("top") and column.endswith("_label")]
        if header == csv_columns(len(ranked)) and settings is not None:
            reason = f"made with --top-k {len(ranked)}, this run uses {settings.top_k}"
        elif header == LEGACY_CSV_COLUMNS:
            reason = "written by an older xclip-cli (other columns)"
        else:
            raise OutputError(f"{results}: not an xclip results file (unexpected header); use --overwrite")
        raise UsageError(f"{results}: {reason}; use --overwrite or another -o")
    records = []
    for row in reader:
        if len(row) == len(header):
            record = dict(zip(header, row, strict=True))
            records.append(record | {"path": _unneutralise(record["path"])})
    return records


def _jsonl_records(results: Path) -> list[dict[str, str]]:
    records = []
    for number, line in enumerate(_complete_lines(results), start=1):
        try:
            record = json.loads(line)
            if not isinstance(record["path"], str):
                raise TypeError
            fields = {key: "" if record.get(key) is None else str(record.get(key)) for key in _RECORD_KEYS}
            records.append(fields | {"path": record["path"], "reported": str(len(record.get("predictions") or ()))})
        except (ValueError, KeyError, TypeError):
            raise OutputError(f"{results}: line {number} is not an xclip result; use --overwrite") from None
    return records


_RECORD_KEYS = ("path", "status", "model", "labelset", "labelset_digest", "views")
# The header of results files written before the per-rank columns and the label-set digest.
LEGACY_CSV_COLUMNS = (
    "path",
    "status",
    "top1_label",
    "top1_probability",
    "top_k",
    "duration",
    "width",
    "height",
    "views",
    "model",
    "labelset",
    "error",
    "warnings",
)


def trim_partial_line(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def _unneutralise(cell: str) -> str:
    """Undo the CSV writer's formula guard, to compare with the real path."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_PREFIXES):
        return cell[1:]
    return cell
