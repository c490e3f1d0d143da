"""Evaluate a checkpoint and a label set on labelled videos: top-1, top-5, per-class accuracy.

A dataset is a folder with one sub-folder of videos per class, or a CSV/TSV manifest of
``path,label`` rows (paths relative to the manifest's folder). Class names are matched to the
label set by a normalised form (case, spaces, underscores, dashes and CamelCase ignored:
``ApplyEyeMakeup``, ``apply_eye_makeup`` and ``Apply eye makeup`` are one class); classes
that match no label stop the run before any video is decoded.

The metric code is plain numpy over label indices, tested against hand-computed cases.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xclip_cli.errors import UsageError
from xclip_cli.labels import LabelSet
from xclip_cli.media.discovery import find_videos
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import ClassScore, EvalReport, VideoResult
from xclip_cli.store.results_file import video_identity
from xclip_cli.store.settings import Setting, same_model
from xclip_cli.store.table import Schema

# What a resumed evaluation must share with the rows it continues.
SETTINGS = (
    Setting("labelset", "--labels", says="{option} {made!r}, this run uses {run!r}"),
    Setting("model", "--model", same=same_model),
    Setting(
        "views",
        "--clips x --crops",
        says="{made} view(s) per video ({option}), this run uses {run}",
        of_results_only=True,
    ),  # an error row's views say nothing
    Setting("precision", "--precision"),
    Setting("sampling", "--sampling"),
)
# The predictions file: one row per video as it finishes, the resume state of an evaluation.
_RESULT = ("path", "label", "status", "top1_label", "correct_top1", "correct_top5", "top5", "error")
_COLUMNS = (*_RESULT, *(setting.key for setting in SETTINGS))
PREDICTIONS = Schema(
    "xclip eval predictions file",
    _COLUMNS,
    SETTINGS,
    older=(_COLUMNS[:-2],),  # xclip-cli 0.3 and earlier: before precision and sampling were recorded
)
TOP_K = 5
# Views per video of each evaluation protocol: X-CLIP's README tests with TEST.NUM_CLIP 4 and
# TEST.NUM_CROP 3 (microsoft/VideoX, X-CLIP/README.md, "Test").
PROTOCOLS = {"single": (1, 1), "xclip": (4, 3)}


@dataclass(frozen=True)
class LabelledVideo:
    path: str
    label: str  # the class name as the dataset spells it


def normalise(name: str) -> str:
    """``ApplyEyeMakeup``, ``apply_eye makeup``, ``Apply-Eye-Makeup`` -> ``applyeyemakeup``."""
    return re.sub(r"[\W_]+", "", name.casefold())  # letters and digits of any script are kept


def load_dataset(source: Path) -> list[LabelledVideo]:
    """Labelled videos from a folder of class folders or a CSV/TSV manifest, in a stable order."""
    if source.is_dir():
        classes = sorted(item for item in source.iterdir() if item.is_dir())
        if not classes:
            raise UsageError(f"{source}: no class folders (expected one sub-folder of videos per class)")
        return [LabelledVideo(path, folder.name) for folder in classes for path in find_videos([str(folder)])]
    if source.suffix.lower() in (".csv", ".tsv", ".txt"):
        return _read_manifest(source)
    raise UsageError(f"{source}: expected a folder of class folders or a .csv/.tsv manifest")


def manifest_rows(source: Path, header: tuple[str, str]) -> tuple[list[list[str]], str]:
    """The non-blank rows of a CSV/TSV manifest without its optional ``header`` row, and the
    delimiter (a tab for .tsv); ``UsageError`` naming the file when it cannot be read."""
    delimiter = "\t" if source.suffix.lower() == ".tsv" else ","
    try:
        with open(source, newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets write a BOM
            rows = [row for row in csv.reader(handle, delimiter=delimiter) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read the manifest ({exc})") from None
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == list(header):
        rows = rows[1:]
    return rows, delimiter


def _read_manifest(source: Path) -> list[LabelledVideo]:
    rows, delimiter = manifest_rows(source, ("path", "label"))
    videos = []
    for number, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise UsageError(f"{source}: row {number}: expected 'path{delimiter}label'")
        path = Path(row[0].strip())
        videos.append(LabelledVideo(str(path if path.is_absolute() else source.parent / path), row[1].strip()))
    if not videos:
        raise UsageError(f"{source}: the manifest lists no videos")
    labels: dict[str, str] = {}
    for video in videos:
        if labels.setdefault(video.path, video.label) != video.label:
            raise UsageError(f"{source}: {video.path} is listed as {labels[video.path]!r} and as {video.label!r}")
    return list({video.path: video for video in videos}.values())  # a path listed twice counts once


def match_classes(classes: Iterable[str], labelset: LabelSet) -> dict[str, int]:
    """Each dataset class -> its label's index; raises ``UsageError`` listing classes that match none."""
    by_key: dict[str, int] = {}
    for index, name in enumerate(labelset.names):
        by_key.setdefault(normalise(name), index)
    matched, unmatched = {}, []
    for name in sorted(set(classes)):
        key = normalise(name)
        if key in by_key:
            matched[name] = by_key[key]
        else:
            unmatched.append(name)
    if unmatched:
        shown = ", ".join(_with_guess(name, labelset.names) for name in unmatched[:8])
        shown += " ..." if len(unmatched) > 8 else ""
        raise UsageError(
            f"{len(unmatched)} dataset classes match no label of {labelset.name!r}: {shown} "
            "(names are compared ignoring case, spaces, underscores and dashes)"
        )
    return matched


def _with_guess(name: str, labels: Sequence[str]) -> str:
    """``'Ridng'`` -> ``'Ridng' (did you mean 'riding'?)`` when a label is close."""
    keys = {normalise(label): label for label in reversed(labels)}
    close = difflib.get_close_matches(normalise(name), list(keys), n=1, cutoff=0.8)
    return f"{name!r} (did you mean {keys[close[0]]!r}?)" if close else repr(name)


def labelset_id(labelset: LabelSet) -> str:
    """The set's name and a digest of its prompts: two sets named alike but worded apart differ."""
    return f"{labelset.name}#{labelset.digest}"


def prediction_row(video: LabelledVideo, result: VideoResult, labelset: str) -> dict[str, str]:
    """One row of the predictions file (the resume state of an evaluation); ``labelset``: its id."""
    top = [p.label for p in result.predictions[:TOP_K]]
    truth = normalise(video.label)
    return {
        "path": video.path,
        "label": video.label,
        "status": result.status,
        "top1_label": top[0] if top else "",
        "correct_top1": str(int(bool(top) and normalise(top[0]) == truth)) if result.ok else "",
        "correct_top5": str(int(any(normalise(label) == truth for label in top))) if result.ok else "",
        "top5": json.dumps(top, ensure_ascii=False) if result.ok else "",
        "error": result.error or "",
        "labelset": labelset,
        "model": result.model,
        "views": str(result.views),
        "precision": result.precision,
        "sampling": result.sampling,
    }


def resumable_rows(output: Path, dataset: Sequence[LabelledVideo], settings: dict[str, str]) -> list[dict[str, str]]:
    """The rows of ``output`` still valid for this run: same settings, and the video's label unchanged.

    Rows made with another label set, checkpoint, number of views, precision or sampling would
    mix two experiments: that stops the run. Videos relabelled since are redone.
    """
    rows = PREDICTIONS.resume(output, settings)
    labels = {video_identity(video.path): video.label for video in dataset}  # however the path was written
    return [row for row in rows if labels.get(video_identity(row["path"])) == row["label"]]


def protocol_views(protocol: str, clips: int, crops: int) -> tuple[int, int]:
    """(clips, crops) of ``protocol``; ``single`` keeps the ones given."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol}: expected one of {', '.join(PROTOCOLS)}")
    return (clips, crops) if protocol == "single" else PROTOCOLS[protocol]


@dataclass(frozen=True)
class EvalPlan:
    """An evaluation checked before any video is decoded: its videos and what is left to do."""

    dataset: tuple[LabelledVideo, ...]
    labelset_id: str
    kept: tuple[dict[str, str], ...]  # rows of an earlier run still valid for this one
    todo: tuple[LabelledVideo, ...]
    output: Path | None
    overwrite: bool


def plan_evaluation(
    data: Path,
    labelset: LabelSet,
    model: str,
    options: ClassifyOptions,
    precision: str,
    output: Path | None,
    overwrite: bool = False,
) -> EvalPlan:
    """Load the dataset, match its classes to ``labelset`` and read what ``output`` already
    holds; ``UsageError`` for classes that match no label or rows made otherwise."""
    dataset = load_dataset(data)
    match_classes((video.label for video in dataset), labelset)
    identity = labelset_id(labelset)
    settings = {
        "labelset": identity,
        "model": model,
        "views": str(options.views),
        "precision": precision,
        "sampling": options.sampling,
    }
    kept = resumable_rows(output, dataset, settings) if output is not None and not overwrite else []
    done = {video_identity(row["path"]) for row in kept}
    todo = tuple(video for video in dataset if video_identity(video.path) not in done)
    return EvalPlan(tuple(dataset), identity, tuple(kept), todo, output, overwrite)


def run_evaluation(
    results: Iterable[VideoResult], plan: EvalPlan, on_result: Callable[[VideoResult], None] | None = None
) -> list[dict[str, str]]:
    """Every row of the evaluation: the kept ones, then one per result of ``plan.todo`` (in
    order), each appended to ``plan.output`` as it comes, so a rerun resumes."""
    videos = {video.path: video for video in plan.todo}
    rows = list(plan.kept)
    with contextlib.ExitStack() as stack:
        if plan.output is not None:
            if plan.overwrite:
                plan.output.unlink(missing_ok=True)
            table = stack.enter_context(PREDICTIONS.appender(plan.output))
        for result in results:
            row = prediction_row(videos[result.path], result, plan.labelset_id)
            rows.append(row)
            if plan.output is not None:
                table.write_rows([PREDICTIONS.row(row)])
            if on_result is not None:
                on_result(result)
    return rows


def evaluate(rows: Sequence[dict[str, str]], labelset: LabelSet) -> EvalReport:
    """Metrics over prediction rows (``prediction_row`` form, old runs' rows included)."""
    index = {normalise(name): i for i, name in reversed(list(enumerate(labelset.names)))}
    scored = [row for row in rows if row["status"] == "ok"]
    truth = np.array([index[normalise(row["label"])] for row in scored], dtype=np.int64)
    ranked = [[index.get(normalise(label), -1) for label in json.loads(row["top5"])] for row in scored]
    return compute_metrics(truth, ranked, labelset.names, failed=len(rows) - len(scored))


def compute_metrics(
    truth: np.ndarray, ranked: Sequence[Sequence[int]], names: Sequence[str], failed: int = 0
) -> EvalReport:
    """Accuracy from true label indices and each video's ranked predicted indices (best first)."""
    hit1 = np.array([bool(r) and r[0] == t for t, r in zip(truth, ranked, strict=True)], dtype=bool)
    hit5 = np.array([t in r[:TOP_K] for t, r in zip(truth, ranked, strict=True)], dtype=bool)
    classes = sorted(set(truth.tolist()))
    per_class = tuple(
        ClassScore(names[c], int((truth == c).sum()), float(hit1[truth == c].mean()), float(hit5[truth == c].mean()))
        for c in classes
    )
    # Rows: the true classes. Columns: the same classes in the same order (the hits lie on the
    # diagonal), then the classes that were only ever predicted; they get no row, which could
    # only ever hold zeros.
    predicted_only = sorted({r[0] for r in ranked if r and r[0] >= 0} - set(classes))
    columns = [*classes, *predicted_only]
    position = {label: i for i, label in enumerate(columns)}
    confusion = np.zeros((len(classes), len(columns)), dtype=np.int64)
    for t, r in zip(truth, ranked, strict=True):
        if r and r[0] >= 0:
            confusion[position[int(t)], position[r[0]]] += 1
    count = len(truth)
    return EvalReport(
        videos=count,
        failed=failed,
        top1=float(hit1.mean()) if count else 0.0,
        top5=float(hit5.mean()) if count else 0.0,
        mean_class_top1=float(np.mean([score.top1 for score in per_class])) if per_class else 0.0,
        per_class=per_class,
        confusion_rows=tuple(names[i] for i in classes),
        confusion_labels=tuple(names[i] for i in columns),
        confusion=confusion,
    )


def write_confusion_csv(report: EvalReport, path: Path) -> None:
    """Rows: true class; columns: top-1 prediction (classes only ever predicted last, with no
    row); cells: video counts."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *report.confusion_labels])
        for label, row in zip(report.confusion_rows, report.confusion.tolist(), strict=True):
            writer.writerow([label, *row])
