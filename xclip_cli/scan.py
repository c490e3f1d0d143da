"""Batch scans: resume from earlier results, and only when they were made the same way.

Bookkeeping helpers; the CLI's ``scan`` command feeds the paths still to do to
``classify_videos`` and appends each finished row to the results file at once. Finding the
videos and sharding them is ``media.discovery``'s.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .csvfile import complete_lines, has_rows_or_header, read_rows, trim_partial_line
from .errors import OutputError, UsageError
from .results import Prediction, VideoResult
from .tagging import Tag
from .writers import FORMULA_PREFIXES, WARNING_SEPARATOR, csv_columns


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

    def differences(self, record: dict[str, str]) -> str | None:
        """What ``record`` (a CSV row or JSONL record, as strings) was made with otherwise, or None."""
        if record.get("labelset_digest", "") == "":
            return "rows written by an older xclip-cli (no label-set digest)"
        if not same_model(record["model"], self.model):
            return f"--model {record['model']}, this run uses {self.model}"
        if record["labelset"] != self.labelset:
            return f"--labels {record['labelset']!r}, this run uses {self.labelset!r}"
        if record.get("precision", "") != self.precision:
            return f"--precision {record.get('precision') or '?'}, this run uses {self.precision}"
        if (record.get("sampling") or "exact") != self.sampling:  # JSONL from before --sampling: exact
            return f"--sampling {record.get('sampling') or 'exact'}, this run uses {self.sampling}"
        if record["labelset_digest"] != self.labelset_digest:
            digests = f"digest {record['labelset_digest']}, this run {self.labelset_digest}"
            return f"other labels, prompts or templates under the name {self.labelset!r} ({digests})"
        if record["status"] != "ok":
            return None
        if (record.get("tags") or "") != "" and not self.multi_label:
            return "--multi-label (rows with tags), this run has none"
        if (record.get("tags") or "") == "" and self.multi_label:
            return "no --multi-label (rows without tags), this run uses it"
        if self.multi_label and (record.get("tags_digest") or "") != self.tags_digest:
            digests = f"tags digest {record.get('tags_digest') or '?'}, this run {self.tags_digest}"
            return f"other tagging thresholds or background prompts ({digests})"
        if record["views"] != str(self.views):
            views = f"{record['views']} view{'' if record['views'] == '1' else 's'} per video"
            return f"{views} (--clips x --crops), this run uses {self.views}"
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


def finished_paths(results: Path, settings: RunSettings | None = None, fmt: str | None = None) -> set[str]:
    """Paths already in a results file (CSV or JSONL), to skip when resuming.

    With ``settings``, a file whose rows were made otherwise (another label set, model, number
    of views or --top-k) is refused with ``UsageError`` and left untouched: appending would mix
    two experiments in one file. A row cut off by a kill is then trimmed, so appending continues
    a valid file. ``fmt`` (csv or jsonl; default: from the extension) is what this run would
    append: a file that holds the other is refused, never appended to in another format.
    """
    if not has_rows_or_header(results):
        return set()
    fmt = fmt or ("jsonl" if results.suffix.lower() == ".jsonl" else "csv")
    with open(results, "rb") as handle:  # the first byte tells: a JSON object, or a CSV header
        held = "jsonl" if handle.read(1) == b"{" else "csv"
    if held != fmt:
        raise UsageError(
            f"{results}: holds {held} rows, this run writes {fmt} (-f {held} continues it); "
            "use --overwrite or another -o"
        )
    records = _jsonl_records(results) if fmt == "jsonl" else _csv_records(results, settings)
    if settings is not None:
        for record in records:
            difference = settings.differences(record)
            if difference is not None:
                raise UsageError(f"{results}: made with {difference}; use --overwrite or another -o")
    trim_partial_line(results)
    return {record["path"] for record in records}


def _csv_records(results: Path, settings: RunSettings | None) -> list[dict[str, str]]:
    header, rows = read_rows(results)
    expected = csv_columns(settings.top_k) if settings is not None else header
    if header != expected:
        ranked = [column for column in header if column.startswith("top") and column.endswith("_label")]
        if header == csv_columns(len(ranked)) and settings is not None:
            reason = f"made with --top-k {len(ranked)}, this run uses {settings.top_k}"
        elif header == LEGACY_CSV_COLUMNS or header == _before_sampling(csv_columns(len(ranked))):
            reason = "written by an older xclip-cli (other columns)"
        else:
            raise OutputError(f"{results}: not an xclip results file (unexpected header); use --overwrite")
        raise UsageError(f"{results}: {reason}; use --overwrite or another -o")
    records = [dict(zip(header, row, strict=True)) for row in rows]
    return [record | {"path": _unneutralise(record["path"])} for record in records]


def _jsonl_records(results: Path) -> list[dict[str, str]]:
    records = []
    for number, line in enumerate(complete_lines(results), start=1):
        try:
            record = json.loads(line)
            if not isinstance(record["path"], str):
                raise TypeError
            fields = {key: "" if record.get(key) is None else str(record.get(key)) for key in _RECORD_KEYS}
            records.append(fields | {"path": record["path"], "reported": str(len(record.get("predictions") or ()))})
        except (ValueError, KeyError, TypeError):
            raise OutputError(f"{results}: line {number} is not an xclip result; use --overwrite") from None
    return records


_RECORD_KEYS = (
    "path", "status", "model", "precision", "labelset", "labelset_digest", "views", "sampling", "tags", "tags_digest",
)  # fmt: skip


def _before_sampling(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The CSV header of xclip-cli 0.3 (before --sampling) for the same --top-k."""
    added = ("sampling", "keyframe_substitutes", "tags", "tags_digest")
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
            return [VideoResult.from_record(json.loads(line)) for line in complete_lines(results)]
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


@dataclass(frozen=True)
class ScanPlan:
    """The videos of a scan and those still to do (after resuming ``output``)."""

    paths: tuple[str, ...]
    todo: tuple[str, ...]
    appending: bool  # the output holds earlier rows: continue it

    @property
    def skipped(self) -> int:
        return len(self.paths) - len(self.todo)


def plan_scan(
    paths: Sequence[str], output: Path | None, settings: RunSettings, fmt: str, overwrite: bool = False
) -> ScanPlan:
    """What a scan of ``paths`` into ``output`` (written as ``fmt``) still has to do; refuses
    (``UsageError``) an output made with other settings or in the other format."""
    done = set() if overwrite or output is None else finished_paths(output, settings, fmt)
    return ScanPlan(tuple(paths), tuple(path for path in paths if path not in done), appending=bool(done))
