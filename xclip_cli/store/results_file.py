"""Results files of scans (CSV or JSONL): what their rows were made with, which videos they
hold, and how rows are written; the resume state of ``xclip scan``.

A row names its video twice: ``path`` as the user gave it, and ``resolved_path``
(``video_identity``), which a resume compares, so a video named another way (relative,
absolute, through a symlink) is never added twice. A file is resumed only by a run with the same
settings (``RunSettings``); one written by xclip-cli 0.4 (no ``resolved_path``) is brought up
to date in place, others are refused in one line.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from xclip_cli.errors import OutputError, UsageError
from xclip_cli.results import (
    FORMULA_PREFIXES,
    WARNING_SEPARATOR,
    Prediction,
    Tag,
    VideoResult,
    csv_cells,
    csv_columns,
)
from xclip_cli.store.atomic import write_text_atomic
from xclip_cli.store.settings import SKIPPED, Setting, refuse_other_settings, same_model
from xclip_cli.store.table import complete_lines, has_rows_or_header, read_rows, trim_partial_line, write_table_atomic


def video_identity(path: str) -> str:
    """What makes two paths one video: the file they lead to. A relative and an absolute path,
    ``..`` and symlinks (to the file or to a folder above it) resolve to one path; hard links
    are separate names of one file and count as separate videos (as ``rsync`` and ``git`` see
    them). Results files keep it beside the path as given (``resolved_path``), so that a resume
    knows a video whatever path form named it, from whatever folder."""
    if "\0" in path:  # no file is named so (the video's row is an error): nothing to resolve
        return path
    return os.path.realpath(path)


@dataclass(frozen=True)
class RunSettings:
    """What a scan's rows depend on: a results file is resumed only by a run with the same."""

    model: str
    labelset: str
    labelset_digest: str
    views: int
    top_k: int
    num_labels: int
    precision: str = "fp32"
    sampling: str = "exact"
    multi_label: bool = False
    tags_digest: str = ""  # with multi_label: tagging.tags_digest of the label set

    def run(self) -> dict[str, str]:
        """These settings as ``SETTINGS`` compares them with a row."""
        run = {
            "model": self.model, "labelset": self.labelset, "precision": self.precision, "sampling": self.sampling,
            "labelset_digest": self.labelset_digest, "multi_label": _tagging(self.multi_label),
            "views": str(self.views), "reported": str(min(self.top_k, self.num_labels)),
        }  # fmt: skip
        return run | ({"tags_digest": self.tags_digest} if self.multi_label else {})


def _tagging(multi_label: bool) -> str:
    return "--multi-label" if multi_label else "no --multi-label"


# What a scan's rows depend on, in the order a difference is named (a row's tagging from its
# tags cell; ``reported``, the labels a JSONL record holds: --top-k, which a CSV's header shows).
SETTINGS = (
    Setting("model", "--model", same=same_model),
    Setting("labelset", "--labels", says="{option} {made!r}, this run uses {run!r}"),
    Setting("precision", "--precision"),
    Setting("sampling", "--sampling", old="exact"),  # JSONL from before --sampling: exact
    Setting(
        "labelset_digest",
        "--labels",
        says="other labels, prompts or templates under the same {option} name (digest {made}, this run {run})",
    ),
    Setting("multi_label", "--multi-label", says="{made}, this run uses {run}", of_results_only=True),
    Setting(
        "tags_digest",
        "--multi-label",
        of_results_only=True,
        says="other tagging thresholds or background prompts (tags digest {made}, this run {run})",
    ),
    Setting(
        "views",
        "--clips x --crops",
        of_results_only=True,
        says="{made} view(s) per video ({option}), this run uses {run}",
    ),
    Setting("reported", "--top-k", old=SKIPPED, of_results_only=True),
)


@dataclass(frozen=True)
class Earlier:
    """What a results file already holds, by video (``media.discovery.video_identity``)."""

    ok: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()  # videos whose row is an error

    @property
    def done(self) -> frozenset[str]:
        return self.ok | self.failed


def finished_paths(results: Path, settings: RunSettings | None = None, fmt: str | None = None) -> set[str]:
    """The videos (``video_identity``) already in a results file: see ``read_earlier``."""
    return set(read_earlier(results, settings, fmt).done)


def read_earlier(results: Path, settings: RunSettings | None = None, fmt: str | None = None) -> Earlier:
    """The videos already in a results file (CSV or JSONL), to skip when resuming.

    With ``settings``, a file whose rows were made otherwise (another label set, model, number
    of views or --top-k) is refused with ``UsageError`` and left untouched: appending would mix
    two experiments in one file. A row cut off by a kill is then trimmed, so appending continues
    a valid file. ``fmt`` (csv or jsonl; default: from the extension) is what this run would
    append: a file that holds the other is refused, never appended to in another format.
    Videos are known by the file their path leads to (``resolved_path``), so a rerun that names
    them another way (relative, absolute, through a symlink) does not add them twice.
    """
    if not has_rows_or_header(results):
        return Earlier()
    fmt = fmt or _format_of(results)
    held = _held_format(results)
    if held != fmt:
        raise UsageError(
            f"{results}: holds {held} rows, this run writes {fmt} (-f {held} continues it); "
            "use --overwrite or another -o"
        )
    records, upgrade = _jsonl_records(results) if fmt == "jsonl" else _csv_records(results, settings)
    if settings is not None:
        made = ({**record, "multi_label": _tagging(bool(record.get("tags")))} for record in records)
        refuse_other_settings(results, made, SETTINGS, settings.run())
    _check_found_here(results, records)
    if upgrade is not None:  # a CSV of 0.4, checked: now given its resolved_path column
        write_table_atomic(results, *upgrade)
    trim_partial_line(results, quoted=fmt == "csv")
    ok = frozenset(record["resolved_path"] for record in records if record["status"] == "ok")
    failed = frozenset(record["resolved_path"] for record in records if record["status"] != "ok") - ok
    return Earlier(ok, failed)


def _format_of(results: Path) -> str:
    return "jsonl" if results.suffix.lower() == ".jsonl" else "csv"


def _held_format(results: Path) -> str:
    with open(results, "rb") as handle:  # the first byte tells: a JSON object, or a CSV header
        return "jsonl" if handle.read(1) == b"{" else "csv"


def _csv_records(
    results: Path, settings: RunSettings | None
) -> tuple[list[dict[str, str]], tuple[tuple[str, ...], list[list[str]]] | None]:
    """The file's records, and for a file of 0.4 (no ``resolved_path`` column) its header and
    rows with that column added, to write once the records are checked."""
    header, rows = read_rows(results)
    expected = csv_columns(settings.top_k) if settings is not None else header
    ranked = [column for column in header if column.startswith("top") and column.endswith("_label")]
    upgrade = None
    if header == _before_identity(csv_columns(len(ranked))):
        paths = [_unneutralise(row[0]) for row in rows]
        header = (*header, "resolved_path")
        rows = [[*row, video_identity(path)] for row, path in zip(rows, paths, strict=True)]
        upgrade = (header, rows)
        expected = csv_columns(settings.top_k) if settings is not None else header
    if header != expected:
        if header == csv_columns(len(ranked)) and settings is not None:
            reason = f"made with --top-k {len(ranked)}, this run uses {settings.top_k}"
        elif header == LEGACY_CSV_COLUMNS or header == _before_sampling(csv_columns(len(ranked))):
            reason = "written by an older xclip-cli (other columns)"
        else:
            raise OutputError(f"{results}: not an xclip results file (unexpected header); use --overwrite")
        raise UsageError(f"{results}: {reason}; use --overwrite or another -o")
    records = [dict(zip(header, row, strict=True)) for row in rows]
    records = [record | {"path": _unneutralise(record["path"])} for record in records]
    if upgrade is not None:  # resolved from here: _check_found_here says whether that can be right
        records = [record | {"resolved_here": "yes"} for record in records]
    return [_with_identity(record) for record in records], upgrade


def _with_identity(record: dict[str, str]) -> dict[str, str]:
    """A record keyed by its video: ``resolved_path`` as written, or (rows written by 0.4, which
    did not know it) the path resolved from here, marked so (``resolved_here``)."""
    if record.get("resolved_path"):
        return record
    return record | {"resolved_path": video_identity(record["path"]), "resolved_here": "yes"}


def _check_found_here(results: Path, records: Sequence[dict[str, str]]) -> None:
    """Rows of 0.4 name videos relative to the folder that scan ran in: resolved from another
    folder they would name other files, and those videos would get second rows. Refused when a
    classified video's relative path leads nowhere from here (an error row's may: its file may
    never have existed)."""
    lost = next(
        (
            record["path"]
            for record in records
            if record.get("resolved_here") and record["status"] == "ok"
            and not os.path.isabs(record["path"]) and not os.path.exists(record["path"])
        ),
        None,
    )  # fmt: skip
    if lost is not None:
        raise UsageError(
            f"{results}: written by xclip-cli 0.4 with paths relative to the folder it ran in, and {lost} is "
            "not found from here; rerun from that folder once (a CSV is then brought up to date)"
        )


def _jsonl_records(results: Path) -> tuple[list[dict[str, str]], None]:
    records = []
    for number, line in enumerate(complete_lines(results, quoted=False), start=1):
        try:
            record = json.loads(line)
            if not isinstance(record["path"], str):
                raise TypeError
            fields = {key: "" if record.get(key) is None else str(record.get(key)) for key in _RECORD_KEYS}
            fields |= {"path": record["path"], "reported": str(len(record.get("predictions") or ()))}
            records.append(_with_identity(fields))
        except (ValueError, KeyError, TypeError):
            raise OutputError(f"{results}: line {number} is not an xclip result; use --overwrite") from None
    return records, None


def drop_rows(results: Path, videos: frozenset[str], fmt: str) -> None:
    """Remove the rows of ``videos`` (``video_identity``) from a results file, atomically (a
    ``--retry-failed`` run replaces them with new rows)."""
    if not videos:
        return
    if fmt == "jsonl":
        lines = complete_lines(results, quoted=False)
        kept = [
            line
            for line, record in zip(lines, _jsonl_records(results)[0], strict=True)
            if record["resolved_path"] not in videos
        ]
        write_text_atomic(results, "".join(kept))
        return
    header, rows = read_rows(results)
    records, _ = _csv_records(results, None)
    kept_rows = [row for row, record in zip(rows, records, strict=True) if record["resolved_path"] not in videos]
    write_table_atomic(results, header, kept_rows)


_RECORD_KEYS = (
    "path", "resolved_path", "status",
    "model", "precision", "labelset", "labelset_digest", "views", "sampling", "tags", "tags_digest",
)  # fmt: skip


def _before_identity(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The CSV header of xclip-cli 0.4 (before ``resolved_path``) for the same --top-k."""
    return tuple(column for column in columns if column != "resolved_path")


def _before_sampling(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The CSV header of xclip-cli 0.3 (before --sampling) for the same --top-k."""
    added = ("sampling", "keyframe_substitutes", "tags", "tags_digest", "resolved_path")
    return tuple(column for column in columns if column not in added)


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


def results_in(results: Path) -> list[VideoResult]:
    """Every video of a results file (CSV or JSONL), earlier runs' included, for the HTML report.

    A CSV keeps the top labels and probabilities, not the logits or frame times.
    """
    if not has_rows_or_header(results):
        return []
    with open(results, "rb") as handle:
        if handle.read(1) == b"{":
            return [VideoResult.from_record(json.loads(line)) for line in complete_lines(results, quoted=False)]
    header, rows = read_rows(results)
    found = []
    for row in (dict(zip(header, cells, strict=True)) for cells in rows):
        ranked = json.loads(row["top_k"]) if row.get("top_k") else []
        found.append(
            VideoResult(
                path=_unneutralise(row["path"]),
                predictions=tuple(Prediction(str(label), float(p), None) for label, p in ranked),
                model=row.get("model", ""),
                precision=row.get("precision", ""),
                labelset=row.get("labelset", ""),
                labelset_digest=row.get("labelset_digest", ""),
                duration=float(row["duration"]) if row.get("duration") else None,
                width=int(row["width"]) if row.get("width") else None,
                height=int(row["height"]) if row.get("height") else None,
                error=(row.get("error") or "error") if row.get("status") != "ok" else None,
                warnings=tuple(row["warnings"].split(WARNING_SEPARATOR)) if row.get("warnings") else (),
                # A CSV keeps each tag's label and score; its threshold is not kept (NaN).
                tags=tuple(Tag(str(label), float(score), math.nan) for label, score in json.loads(row["tags"]))
                if row.get("tags")
                else None,
            )
        )
    return found


def _unneutralise(cell: str) -> str:
    """Undo the CSV writer's formula guard, to compare with the real path."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_PREFIXES):
        return cell[1:]
    return cell


class ResultRows:
    """Results as rows on a text stream: CSV (a header first, unless continuing a file) or JSONL,
    each flushed as it is written. A scan's results file, and ``-f csv``/``-f jsonl`` output."""

    def __init__(self, stream: TextIO, fmt: str, top_k: int, appending: bool) -> None:
        self.stream, self.fmt = stream, fmt
        self.columns = csv_columns(top_k)
        self.csv = csv.writer(stream)
        if fmt == "csv" and not appending:
            self.csv.writerow(self.columns)
            stream.flush()

    def write(self, result: VideoResult) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(result.to_record(), ensure_ascii=False) + "\n")
        else:
            self.csv.writerow(csv_cells(result, self.columns))
        self.stream.flush()
