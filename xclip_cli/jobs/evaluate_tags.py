"""``xclip eval --multi-label``: how well the tags of a label set match videos labelled with
several labels (or none), and thresholds fitted to them.

A manifest is a CSV/TSV of ``path,labels`` rows, the labels separated by ``;`` (an empty cell:
the video shows none of them). Per label: average precision over the videos (the area under
its precision-recall steps, ties taken together, as scikit-learn computes it), and precision,
recall and F1 at the threshold in use; mAP is the mean AP over the labels with positives
(labels without any are reported as such, not as 0). ``fit_thresholds`` picks, per label, the
threshold that maximises F1 on the data, and ``fitted_labelset_yaml`` writes the label set back
with them. The metric code is plain numpy, tested against hand-computed cases.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xclip_cli.errors import UsageError
from xclip_cli.jobs.evaluate import SETTINGS as EVAL_SETTINGS
from xclip_cli.jobs.evaluate import manifest_rows, match_classes
from xclip_cli.labels import LabelSet
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult
from xclip_cli.store.results_file import video_identity
from xclip_cli.store.settings import Setting
from xclip_cli.store.table import Schema

LABEL_SEPARATOR = ";"


@dataclass(frozen=True)
class TaggedVideo:
    path: str
    labels: tuple[str, ...]  # as the manifest spells them; empty: none of the label set applies


@dataclass(frozen=True)
class LabelMetrics:
    label: str
    positives: int
    ap: float | None  # None: no positive video, so no AP
    threshold: float
    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int

    def to_record(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass(frozen=True)
class MultiLabelReport:
    videos: int
    failed: int
    mean_ap: float | None  # over the labels with positives
    per_label: tuple[LabelMetrics, ...]

    def to_record(self, labelset: str) -> dict[str, Any]:
        return {
            "labelset": labelset,
            "videos": self.videos,
            "failed": self.failed,
            "mAP": self.mean_ap,
            "labels_without_positives": [m.label for m in self.per_label if m.ap is None],
            "per_label": [m.to_record() for m in self.per_label],
        }


@dataclass(frozen=True)
class Fit:
    """The threshold that maximises a label's F1 on the data, with the counts it came from."""

    label: str
    threshold: float | None  # None: no positives, nothing to fit
    f1: float
    positives: int
    videos: int


def load_multilabel_manifest(source: Path, labelset: LabelSet) -> list[TaggedVideo]:
    """Videos and their labels from a ``path,labels`` CSV/TSV; labels matched to ``labelset``
    as ``xclip eval`` matches class names (``UsageError`` naming any that match none)."""
    rows, delimiter = manifest_rows(source, ("path", "labels"))
    videos, seen = [], set()
    for number, row in enumerate(rows, start=1):
        if not row[0].strip() or len(row) > 2:
            raise UsageError(f"{source}: row {number}: expected 'path{delimiter}label;label;...' (labels may be empty)")
        path = Path(row[0].strip())
        full = str(path if path.is_absolute() else source.parent / path)
        if full in seen:
            raise UsageError(f"{source}: row {number}: {row[0].strip()} is listed twice")
        seen.add(full)
        cell = row[1] if len(row) > 1 else ""
        videos.append(
            TaggedVideo(full, tuple(dict.fromkeys(p.strip() for p in cell.split(LABEL_SEPARATOR) if p.strip())))
        )
    if not videos:
        raise UsageError(f"{source}: the manifest lists no videos")
    match_classes({label for video in videos for label in video.labels}, labelset)
    return videos


def truth_matrix(videos: Sequence[TaggedVideo], labelset: LabelSet) -> np.ndarray:
    """(videos, labels) booleans: which label each video shows."""
    index = match_classes({label for video in videos for label in video.labels}, labelset)
    truth = np.zeros((len(videos), len(labelset)), dtype=bool)
    for row, video in enumerate(videos):
        for label in video.labels:
            truth[row, index[label]] = True
    return truth


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """AP of one label: sum over distinct score thresholds (high to low) of recall gained times
    precision there; tied scores count together. None when there is no positive."""
    total = int(positives.sum())
    if total == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    ranked_scores, ranked_hits = scores[order], positives[order].astype(np.int64)
    # The last index of every run of equal scores: where a threshold can fall.
    ends = np.flatnonzero(np.r_[ranked_scores[1:] != ranked_scores[:-1], True])
    hits = np.cumsum(ranked_hits)[ends]
    taken = ends + 1
    recall = hits / total
    precision = hits / taken
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def counts_at(scores: np.ndarray, positives: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of ``score >= threshold``."""
    predicted = scores >= threshold
    tp = int((predicted & positives).sum())
    return tp, int((predicted & ~positives).sum()), int((~predicted & positives).sum())


def f1_of(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1); 0 where undefined (nothing predicted, or nothing to find)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def compute_multilabel_metrics(
    scores: np.ndarray, truth: np.ndarray, names: Sequence[str], thresholds: Sequence[float], failed: int = 0
) -> MultiLabelReport:
    """Metrics from (videos, labels) scores and truth, at the given per-label thresholds."""
    per_label = []
    for column, (name, limit) in enumerate(zip(names, thresholds, strict=True)):
        own, positives = scores[:, column], truth[:, column]
        tp, fp, fn = counts_at(own, positives, limit)
        precision, recall, f1 = f1_of(tp, fp, fn)
        ap = average_precision(own, positives)
        per_label.append(LabelMetrics(name, int(positives.sum()), ap, limit, precision, recall, f1, tp, fp, fn))
    known = [m.ap for m in per_label if m.ap is not None]
    return MultiLabelReport(len(scores), failed, float(np.mean(known)) if known else None, tuple(per_label))


def fit_thresholds(scores: np.ndarray, truth: np.ndarray, names: Sequence[str]) -> list[Fit]:
    """Per label, the threshold with the highest F1 on these videos (``score >= threshold``
    applies); ties go to the highest (fewest tags). It sits halfway between the lowest score
    tagged and the next lower one (0 below the lowest), so a score a rounding away from the data
    is judged the same."""
    fits = []
    for column, name in enumerate(names):
        own, positives = scores[:, column], truth[:, column]
        if not positives.any():
            fits.append(Fit(name, None, 0.0, 0, len(own)))
            continue
        distinct = np.unique(own)[::-1]  # high to low
        f1, at = max((f1_of(*counts_at(own, positives, float(value)))[2], -k) for k, value in enumerate(distinct))
        lower = float(distinct[-at + 1]) if -at + 1 < len(distinct) else 0.0
        fits.append(Fit(name, (float(distinct[-at]) + lower) / 2, f1, int(positives.sum()), len(own)))
    return fits


def fitted_labelset_yaml(labelset: LabelSet, fits: Sequence[Fit], source: str) -> str:
    """The label set as YAML with each fitted threshold, and how it was fitted (comments)."""
    by_label = {fit.label: fit for fit in fits}
    labels: list[Any] = []
    for label in labelset.labels:
        fit = by_label[label.name]
        entry: dict[str, Any] = {"name": label.name, "prompts": list(label.prompts)}
        threshold = fit.threshold if fit.threshold is not None else label.threshold
        if threshold is not None:
            entry["threshold"] = threshold
        labels.append(entry)
    data: dict[str, Any] = {"name": labelset.name, "templates": list(labelset.templates), "labels": labels}
    for key in ("description", "source"):
        if getattr(labelset, key):
            data[key] = getattr(labelset, key)
    if labelset.background:
        data["background"] = list(labelset.background)
    lines = [
        f"# Thresholds fitted by `xclip eval --multi-label --fit-thresholds` on {source}:",
        "# per label, the score threshold with the highest F1 on those videos. They hold for that",
        "# checkpoint, wording and footage only; thresholds from random or foreign data mean nothing.",
    ]
    for fit in fits:
        if fit.threshold is None:
            lines.append(f"#   {json.dumps(fit.label, ensure_ascii=False)}: no positive video, threshold not fitted")
        else:
            lines.append(
                f"#   {json.dumps(fit.label, ensure_ascii=False)}: F1 {fit.f1:.3f} "
                f"({fit.positives} positive of {fit.videos} videos)"
            )
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + body


# --- the predictions file: one row per video as it finishes, the resume state -----------------

# What the scores depend on (not the thresholds: a set with fitted ones reuses the same rows).
SETTINGS = (
    *EVAL_SETTINGS,
    Setting("background", "--labels", says="other background prompts (digest {made}, this run {run})"),
)
PREDICTIONS = Schema(
    "xclip eval --multi-label predictions file",
    ("path", "labels", "status", "scores", "error", *(setting.key for setting in SETTINGS)),
    SETTINGS,
)


def prediction_row(
    video: TaggedVideo, status: str, scores: Sequence[float] | None, error: str, settings: dict[str, str]
) -> dict[str, str]:
    scored = json.dumps([float(s) for s in scores]) if scores is not None else ""  # exact: repr
    return {"path": video.path, "labels": LABEL_SEPARATOR.join(video.labels), "status": status, "scores": scored,
            "error": error, **settings}  # fmt: skip


def kept_rows(output: Path, videos: Sequence[TaggedVideo], settings: dict[str, str]) -> list[dict[str, str]]:
    """Rows of an earlier run still valid for this one (same settings, the video's labels unchanged);
    ``UsageError`` for a file made otherwise, which must not be mixed with this run's rows."""
    records = PREDICTIONS.resume(output, settings)
    labels = {video_identity(video.path): LABEL_SEPARATOR.join(video.labels) for video in videos}
    return [record for record in records if labels.get(video_identity(record["path"])) == record["labels"]]


@dataclass(frozen=True)
class TagPlan:
    """A tag evaluation checked before any video is decoded: its videos and what is left to do."""

    manifest: Path
    videos: tuple[TaggedVideo, ...]
    settings: dict[str, str]  # what the predictions file's rows must have been made with
    kept: tuple[dict[str, str], ...]  # rows of an earlier run still valid for this one
    todo: tuple[TaggedVideo, ...]
    output: Path | None


@dataclass(frozen=True)
class TagEvaluation:
    """The metrics, and the scores and truth they came from (``fit_thresholds`` takes them)."""

    report: MultiLabelReport
    scores: np.ndarray  # (scored videos, labels)
    truth: np.ndarray


def plan_tag_evaluation(
    manifest: Path,
    labelset: LabelSet,
    model: str,
    options: ClassifyOptions,
    precision: str,
    output: Path | None = None,
    overwrite: bool = False,
) -> TagPlan:
    """Read the manifest (unknown labels stop here) and what ``output`` already holds (rows
    made otherwise stop here; ``overwrite`` removes it). Call holding ``locks.exclusive(output)``."""
    from xclip_cli.jobs.evaluate import labelset_id
    from xclip_cli.jobs.tagging import background_digest

    if manifest.is_dir():
        raise UsageError(f"{manifest}: --multi-label reads a path,labels manifest (labels ';'-separated), not a folder")
    videos = load_multilabel_manifest(manifest, labelset)
    settings = {
        "labelset": labelset_id(labelset), "model": model, "views": str(options.views), "precision": precision,
        "sampling": options.sampling, "background": background_digest(labelset),
    }  # fmt: skip
    if output is not None and overwrite:
        output.unlink(missing_ok=True)
    kept = kept_rows(output, videos, settings) if output is not None else []
    done = {video_identity(row["path"]) for row in kept}  # a video named another way is still done
    todo = [video for video in videos if video_identity(video.path) not in done]
    return TagPlan(manifest, tuple(videos), settings, tuple(kept), tuple(todo), output)


def run_tag_evaluation(
    plan: TagPlan,
    labelset: LabelSet,
    results: Iterable[VideoResult],
    on_result: Callable[[VideoResult], None] | None = None,
) -> TagEvaluation:
    """Score the kept rows and ``results`` (of ``plan.todo``, with ``multi_label``), appending each
    new row to ``plan.output`` as it comes, so a rerun resumes."""
    from xclip_cli.jobs.tagging import thresholds

    rows = {video_identity(row["path"]): (row["status"], row["scores"]) for row in plan.kept}
    by_path = {video.path: video for video in plan.todo}
    with contextlib.ExitStack() as stack:
        table = stack.enter_context(PREDICTIONS.appender(plan.output)) if plan.output else None
        for result in results:
            video = by_path[result.path]
            row = prediction_row(video, result.status, result.label_scores, result.error or "", plan.settings)
            rows[video_identity(result.path)] = (row["status"], row["scores"])
            if table is not None:
                table.write_rows([PREDICTIONS.row(row)])
            if on_result is not None:
                on_result(result)
    scored = [video for video in plan.videos if rows[video_identity(video.path)][0] == "ok"]
    cells = [json.loads(rows[video_identity(video.path)][1]) for video in scored]
    scores = np.array(cells, dtype=np.float64).reshape(len(scored), len(labelset))
    truth = truth_matrix(scored, labelset)
    failed = len(plan.videos) - len(scored)
    report = compute_multilabel_metrics(scores, truth, labelset.names, thresholds(labelset), failed=failed)
    return TagEvaluation(report, scores, truth)
