"""What the tool returns: plain frozen dataclasses that every writer, the server and the client
understand, each with ``to_record`` (its JSON form) and, where records come back, ``from_record``.

Light on purpose: numpy is imported only by the methods that compute (``xclip --help`` loads
this module).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xclip_cli.errors import ExitCode

if TYPE_CHECKING:
    import numpy as np

DEFAULT_TOP_K = 5  # labels reported per video unless --top-k says otherwise


@dataclass(frozen=True)
class Tag:
    """A label that applies to a video: its own score, and the threshold it reached."""

    label: str
    score: float
    threshold: float

    def to_record(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "threshold": self.threshold}


def tags_above(names: Sequence[str], scores: Sequence[float], limits: Sequence[float]) -> tuple[Tag, ...]:
    found = [Tag(name, float(score), limit) for name, score, limit in zip(names, scores, limits, strict=True)]
    return tuple(sorted((tag for tag in found if tag.score >= tag.threshold), key=lambda tag: -tag.score))


def tags_record(tags: Sequence[Tag] | None) -> list[dict[str, Any]] | None:
    """The JSON form of a result's or segment's tags (None: --multi-label was not asked)."""
    return None if tags is None else [tag.to_record() for tag in tags]


def tags_cell(tags: Sequence[Tag] | None) -> str:
    """The CSV form: ``[[label, score], ...]`` (scores to 6 places); empty when not asked."""
    import json

    return "" if tags is None else json.dumps([[tag.label, round(tag.score, 6)] for tag in tags])


@dataclass(frozen=True)
class Prediction:
    """One label's score for one video."""

    label: str
    probability: float  # softmax over the whole label set
    logit: float | None  # X-CLIP's scaled cosine similarity (logits_per_video); the mean over views

    def to_record(self) -> dict[str, Any]:
        return {"label": self.label, "probability": self.probability, "logit": self.logit}


def rank(probabilities: np.ndarray, logits: np.ndarray | None, names: Sequence[str], k: int) -> tuple[Prediction, ...]:
    """The ``k`` labels of highest probability, best first (ties keep the label order).

    ``logits`` are reported beside the probabilities (None where there are none to report).
    """
    import numpy as np

    order = np.argsort(-np.asarray(probabilities, dtype=np.float64), kind="stable")[:k]
    return tuple(
        Prediction(names[i], float(probabilities[i]), None if logits is None else float(logits[i]))
        for i in order.tolist()
    )


@dataclass(frozen=True)
class VideoResult:
    """The outcome for one input: top predictions, or the reason it failed."""

    path: str  # exactly as given by the user
    predictions: tuple[Prediction, ...] = ()
    model: str = ""
    precision: str = ""  # fp32, or the lossy setting the model ran at
    labelset: str = ""
    labelset_digest: str = ""  # LabelSet.digest: tells two sets named alike but worded apart
    timestamps: tuple[float, ...] = ()  # seconds of the frames used, from the first frame
    duration: float | None = None  # seconds
    width: int | None = None  # decoded size, as displayed (after rotation)
    height: int | None = None
    error: str | None = None
    views: int = 1  # temporal views x crops whose probabilities were averaged
    warnings: tuple[str, ...] = ()  # what was wrong with a video that still classified (damage, truncation)
    sampling: str = "exact"  # how frames were chosen (ClassifyOptions.sampling)
    keyframe_substitutes: int | None = 0  # frames that were keyframes near the exact ones (None: not known)
    tags: tuple[Tag, ...] | None = None  # --multi-label: the labels that apply (None: not asked)
    tags_digest: str = ""  # --multi-label: tagging.tags_digest of the background and thresholds used
    resolved_path: str = ""  # media.discovery.video_identity(path) where it is known: a resume's key
    # --multi-label: every label's own score, in label-set order (for `eval --multi-label`; not in records).
    label_scores: tuple[float, ...] | None = field(default=None, repr=False, compare=False)
    # JPEGs of the frames the model saw (ClassifyOptions.thumbnails); for the HTML report, not in records.
    thumbnails: tuple[bytes, ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"

    def to_record(self) -> dict[str, Any]:
        """The JSON form (also one JSONL line, and the server's answer)."""
        return {
            "path": self.path,
            "resolved_path": self.resolved_path or None,
            "status": self.status,
            "model": self.model,
            "precision": self.precision,
            "labelset": self.labelset,
            "labelset_digest": self.labelset_digest,
            "predictions": [prediction.to_record() for prediction in self.predictions],
            "timestamps": list(self.timestamps),
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "views": self.views,
            "sampling": self.sampling,
            "keyframe_substitutes": self.keyframe_substitutes if self.ok else None,
            "tags": tags_record(self.tags),
            "tags_digest": self.tags_digest or None,
            "error": self.error,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], path: str | None = None) -> VideoResult:
        """``to_record`` undone; ``path`` replaces the stored one (the client keeps the user's)."""
        return cls(
            path=record["path"] if path is None else path,
            predictions=tuple(Prediction(p["label"], p["probability"], p["logit"]) for p in record["predictions"]),
            model=record["model"],
            precision=record.get("precision", ""),
            labelset=record["labelset"],
            labelset_digest=record.get("labelset_digest", ""),
            timestamps=tuple(record["timestamps"]),
            duration=record["duration"],
            width=record["width"],
            height=record["height"],
            views=record.get("views", 1),
            error=record["error"],
            warnings=tuple(record.get("warnings", ())),
            sampling=record.get("sampling", "exact"),
            keyframe_substitutes=record.get("keyframe_substitutes", 0),
            tags=None
            if record.get("tags") is None
            else tuple(Tag(t["label"], t["score"], t["threshold"]) for t in record["tags"]),
            tags_digest=record.get("tags_digest") or "",
            resolved_path=(record.get("resolved_path") or "") if path is None else "",  # the server's, not ours
        )


@dataclass
class Tally:
    """Counts finished and failed videos as they come, and gives the exit code for them all."""

    done: int = 0
    failed: int = 0

    def add(self, result: VideoResult) -> None:
        self.done += 1
        self.failed += not result.ok

    @property
    def exit_code(self) -> ExitCode:
        if not self.failed:
            return ExitCode.OK
        return ExitCode.ALL_FAILED if self.failed == self.done else ExitCode.PARTIAL


# --- timelines --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One classified window: its extent, the stretch of time it owns, its scores."""

    start: float
    end: float
    owns_from: float
    owns_to: float
    probabilities: np.ndarray  # one per label
    logits: np.ndarray | None = None  # one per label (None: not known)
    thumbnail: bytes = field(default=b"", repr=False)  # a JPEG of the window's middle frame (for --report)
    tag_scores: np.ndarray | None = None  # --multi-label: each label's own score


@dataclass(frozen=True)
class Segment:
    """A stretch of video with one top label (one window, or a run of windows merged)."""

    start: float
    end: float
    label: str
    probability: float  # mean probability of ``label`` over the segment's windows
    windows: int
    predictions: tuple[Prediction, ...]  # top labels of the mean probabilities (and mean logits)
    tags: tuple[Tag, ...] | None = None  # --multi-label: labels whose mean own score reaches their threshold

    def to_record(self) -> dict[str, Any]:
        """Times in seconds and in integer milliseconds."""
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "start_ms": round(self.start * 1000),
            "end_ms": round(self.end * 1000),
            "label": self.label,
            "probability": self.probability,
            "windows": self.windows,
            "predictions": [{"label": p.label, "probability": p.probability} for p in self.predictions],
            "tags": tags_record(self.tags),
        }


@dataclass(frozen=True)
class Timeline:
    """Every window of one video, scored; ``segments`` merges them for reporting."""

    path: str
    model: str
    labelset: str
    duration: float
    window: float
    stride: float
    windows: tuple[Window, ...]
    labels: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    shots: tuple[float, ...] | None = None  # with --shots: the times where shots start (cuts)
    thresholds: tuple[float, ...] | None = None  # --multi-label: each label's threshold (segments get tags)

    def segments(self, merge: bool = True, top_k: int = 3) -> tuple[Segment, ...]:
        """Merged runs of equal top labels tiling the video, or (``merge=False``) raw windows."""
        runs: list[list[Window]] = []
        for window in self.windows:
            if runs and merge and _top(runs[-1][-1].probabilities) == _top(window.probabilities):
                runs[-1].append(window)
            else:
                runs.append([window])
        return tuple(self._segment(run, merge, top_k) for run in runs)

    def to_record(self, segments: Sequence[Segment], merged: bool) -> dict[str, Any]:
        """The JSON document of a timeline reported as ``segments``."""
        return {
            "path": self.path,
            "model": self.model,
            "labelset": self.labelset,
            "duration": self.duration,
            "window": self.window,
            "stride": self.stride,
            "merged": merged,
            "shots": None if self.shots is None else [round(cut, 3) for cut in self.shots],
            "warnings": list(self.warnings),
            "segments": [segment.to_record() for segment in segments],
        }

    def _segment(self, run: list[Window], merged: bool, top_k: int) -> Segment:
        import numpy as np

        mean = np.mean([window.probabilities for window in run], axis=0)
        known = [window.logits for window in run if window.logits is not None]
        mean_logits = np.mean(known, axis=0) if len(known) == len(run) else None
        best = _top(run[0].probabilities)
        start, end = (run[0].owns_from, run[-1].owns_to) if merged else (run[0].start, run[0].end)
        return Segment(
            start=start,
            end=end,
            label=self.labels[best],
            probability=float(np.mean([window.probabilities[best] for window in run])),
            windows=len(run),
            predictions=rank(mean, mean_logits, self.labels, top_k),
            tags=self._tags(run),
        )

    def _tags(self, run: list[Window]) -> tuple[Tag, ...] | None:
        import numpy as np

        known = [window.tag_scores for window in run if window.tag_scores is not None]
        if self.thresholds is None or len(known) != len(run):
            return None
        return tags_above(self.labels, np.mean(known, axis=0).tolist(), self.thresholds)


def _top(probabilities: np.ndarray) -> int:
    return int(probabilities.argmax())


# --- search hits and evaluation reports -------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    """One video of an index, scored for a text: the logit classify reports for that text."""

    path: str
    score: float

    def to_record(self, rank: int) -> dict[str, Any]:
        return {"rank": rank, "path": self.path, "score": self.score}


@dataclass(frozen=True)
class Moment:
    """Where in one video a query matches (``xclip search``, windowed index): a window, or
    neighbouring matching windows merged. ``score``: the best window's logit for the query (as
    ``classify --start/--end`` of it reports); ``best``: that window's (start, end)."""

    query: str
    path: str
    start: float
    end: float
    score: float
    best: tuple[float, float]
    windows: int = 1

    def to_record(self, rank: int) -> dict[str, Any]:  # times as timelines give them
        times = {"start": round(self.start, 3), "end": round(self.end, 3)}
        times |= {"start_ms": round(self.start * 1000), "end_ms": round(self.end * 1000)}
        best = {"best_start": round(self.best[0], 3), "best_end": round(self.best[1], 3)}
        return {"rank": rank, "query": self.query, "path": self.path, **times, "score": self.score,
                "windows": self.windows, **best}  # fmt: skip


@dataclass(frozen=True)
class ClassScore:
    label: str
    videos: int
    top1: float
    top5: float


@dataclass(frozen=True)
class EvalReport:
    videos: int  # scored (failed videos are counted apart, not as wrong)
    failed: int
    top1: float
    top5: float
    mean_class_top1: float  # the mean over classes of each class's top-1 accuracy
    per_class: tuple[ClassScore, ...]
    # Rows: the true classes; columns: the top-1 predictions, the true classes first in the same
    # order (hits on the diagonal), then any class only ever predicted (it has no row).
    confusion_rows: tuple[str, ...]
    confusion_labels: tuple[str, ...]
    confusion: np.ndarray  # (rows, columns) video counts

    def to_record(self, labelset: str) -> dict[str, Any]:
        return {
            "labelset": labelset,
            "videos": self.videos,
            "failed": self.failed,
            "top1": self.top1,
            "top5": self.top5,
            "mean_class_top1": self.mean_class_top1,
            "per_class": [vars(score) for score in self.per_class],
        }


# --- the CSV form of a result (results files and `-f csv`) --------------------------------------

CSV_TAIL_COLUMNS = (
    "top_k",
    "tags",
    "tags_digest",
    "duration",
    "width",
    "height",
    "views",
    "sampling",
    "keyframe_substitutes",
    "model",
    "precision",
    "labelset",
    "labelset_digest",
    "error",
    "warnings",
    "resolved_path",
)


def csv_columns(top_k: int = DEFAULT_TOP_K) -> tuple[str, ...]:
    """The CSV header: the path, status and each of the ``top_k`` labels in its own cells, then the rest."""
    ranked = [f"top{rank}_{part}" for rank in range(1, top_k + 1) for part in ("label", "probability")]
    return ("path", "status", *ranked, *CSV_TAIL_COLUMNS)


CSV_COLUMNS = csv_columns()  # with the default --top-k
WARNING_SEPARATOR = " | "  # between warnings in the CSV cell
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets may run as a formula


def csv_cells(result: VideoResult, columns: Sequence[str]) -> list[Any]:
    """A result's CSV row under ``columns`` (``csv_columns``): the top labels in their own cells,
    ``top_k`` as a JSON list of [label, probability] pairs; formula-like text neutralised."""
    top_k = sum(column.endswith("_label") and column.startswith("top") for column in columns)
    ranked = dict.fromkeys(columns[2 : 2 + 2 * top_k], "")
    for rank, prediction in enumerate(result.predictions[:top_k], start=1):
        ranked[f"top{rank}_label"] = prediction.label
        ranked[f"top{rank}_probability"] = f"{prediction.probability:.6f}"
    row = {
        "path": result.path,
        "status": result.status,
        **ranked,
        "top_k": json.dumps([[p.label, round(p.probability, 6)] for p in result.predictions], ensure_ascii=False)
        if result.predictions
        else "",
        "tags": tags_cell(result.tags),
        "tags_digest": result.tags_digest,
        "duration": f"{result.duration:.3f}" if result.duration is not None else "",
        "width": result.width if result.width is not None else "",
        "height": result.height if result.height is not None else "",
        "views": result.views if result.ok else "",
        "sampling": result.sampling,
        "keyframe_substitutes": ""
        if not result.ok or result.keyframe_substitutes is None
        else result.keyframe_substitutes,
        "model": result.model,
        "precision": result.precision,
        "labelset": result.labelset,
        "labelset_digest": result.labelset_digest,
        "error": result.error or "",
        "warnings": WARNING_SEPARATOR.join(result.warnings),
        "resolved_path": result.resolved_path,
    }
    return [neutralise_formula(row[column]) for column in columns]


def neutralise_formula(value: Any) -> Any:
    """Prefix text a spreadsheet would evaluate (``=cmd()``, ``+1``, ``@x``) with a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
