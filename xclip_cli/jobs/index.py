"""Embedding indexes: decode and encode videos once, score any text or label set later.

An index is a folder:

* ``index.json``: the checkpoint id, the fingerprint of its vision side, frames, dimensions,
  how frames were sampled (``--sampling``);
* ``videos.csv``: one row per video (absolute path, status, shard, row, duration, size, error),
  appended and flushed as videos finish: the resume state, like a scan's CSV. Paths are stored
  absolute so that they lead to the videos from wherever the index is read (indexes written
  before ``"paths": "absolute"`` in the manifest hold them as given to ``xclip embed``);
* ``embeds-NNNNN.npy`` (videos x D, unit length) and ``patches-NNNNN.npy`` (videos x P x D),
  float32: what X-CLIP's head needs of each video (``Backend.video_features``). A shard's rows reach
  ``videos.csv`` only after its arrays are on disk, so a killed run loses at most one shard of
  work and never leaves a row without its data.

Scoring from an index runs only the text side and the prompt generator, so the numbers equal
those of classifying the videos (tested), without decoding anything again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from xclip_cli.errors import OutputError, UsageError
from xclip_cli.jobs.classify import labelled_result, result_scores, scoring_text_features
from xclip_cli.labels import LabelSet
from xclip_cli.model.backend import Backend, VideoFeatures
from xclip_cli.results import SearchHit, VideoResult
from xclip_cli.store.atomic import save_array_atomic, write_text_atomic
from xclip_cli.store.locks import exclusive
from xclip_cli.store.settings import Setting, refuse_other_settings, same_model
from xclip_cli.store.table import Schema

FORMAT = 1
MANIFEST = "index.json"
TABLE = "videos.csv"
_VIDEO_COLUMNS = ("path", "status", "shard", "row", "duration", "width", "height", "error")
# Version 2 adds the window a row holds (start, end; ``windows``: how many its video has, so a
# video cut off by a kill is known), empty for whole-video rows.
ENTRIES = Schema(
    "xclip index table", (*_VIDEO_COLUMNS, "start", "end", "windows"), older=(_VIDEO_COLUMNS,), reads_older=True
)
WHOLE_VIDEOS = "none"  # the ``windows`` setting of an index of whole videos
# What the features depend on, as the manifest records it: adding to an index, or scoring it,
# with other settings would mix or misread two kinds of features.
SETTINGS = (
    Setting("model", "--model", same=same_model),
    Setting("precision", "--precision", old="fp32"),
    Setting("sampling", "--sampling", old="exact"),  # indexes from before --sampling: exact
    Setting("windows", "--windows", old=WHOLE_VIDEOS),
    Setting("dtype", "--dtype", old="float32"),
    Setting(
        "vision_fingerprint",
        "--model",
        says="other vision weights or preprocessing (fingerprint {made}, this run {run})",
    ),
)
ADD_REMEDY = "use those settings, another -o, or --overwrite"
LOCK = ".lock"
SHARD_FILE = re.compile(r"^(embeds|patches)-(\d{5})\.npy$")
SHARD_VIDEOS = 64  # videos per shard file: few files, little lost to a kill
SHARD_WINDOWS = 256  # windows per shard file (a video's windows share one): about 15 min of video
SCORE_CHUNK = 256  # videos per prompt-generator call when scoring an index
Extents = list[tuple[float, float]]  # (start, end) of each window of a video, in seconds
T = TypeVar("T")


@dataclass(frozen=True)
class IndexEntry:
    """One video of an index: where its features are, or why it has none."""

    path: str
    status: str  # ok | error
    shard: int | None
    row: int | None
    duration: float | None
    width: int | None
    height: int | None
    error: str | None
    start: float | None = None  # the window this row holds (a windowed index), in seconds
    end: float | None = None
    windows: int | None = None  # how many windows its video has


class IndexWriter:
    """Appends videos to an index folder (created, or resumed when it holds the same checkpoint)."""

    def __init__(
        self,
        folder: Path,
        runner: Backend,
        overwrite: bool = False,
        sampling: str = "exact",
        windows: str = WHOLE_VIDEOS,
        dtype: str = "float32",
    ) -> None:
        self.folder = folder
        self.manifest = {
            "format": FORMAT,
            "model": runner.model_id,
            "vision_fingerprint": runner.vision_fingerprint(),
            "num_frames": runner.num_frames,
            "precision": runner.precision,
            "paths": "absolute",
            "sampling": sampling,
            "windows": windows,
            "dtype": dtype,
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create the index folder ({exc.strerror or exc})") from None
        self.lock = contextlib.ExitStack()  # two writers would mix shards
        self.lock.enter_context(exclusive(folder, lock=folder / LOCK))
        try:
            self._open(runner, overwrite)
        except BaseException:
            self.lock.close()
            raise

    def _open(self, runner: Backend, overwrite: bool) -> None:
        """Check and continue the index at ``self.folder`` (or start it), holding its lock."""
        folder = self.folder
        if overwrite:
            for item in folder.iterdir():
                if item.name in (MANIFEST, TABLE) or SHARD_FILE.match(item.name):
                    item.unlink()
        existing = read_manifest(folder) if (folder / MANIFEST).exists() else None
        if existing is not None:
            refuse_other_settings(folder, [_made(existing, runner)], SETTINGS, _run(self.manifest), ADD_REMEDY)
        else:
            _write_json(folder / MANIFEST, self.manifest)
        ENTRIES.upgrade(folder / TABLE)
        stored = read_entries(folder)
        entries = _complete(stored)
        if len(entries) < len(stored):  # a video's windows cut off by a kill: redone
            ENTRIES.rewrite(folder / TABLE, [_entry_record(entry) for entry in entries])
        # Relative paths (older indexes) meant the folder embed ran in: this one, if resumed from it.
        self.done = {os.path.abspath(entry.path) for entry in entries}
        self.next_shard = max((entry.shard for entry in entries if entry.shard is not None), default=-1) + 1
        self._trim_unlisted_shards()
        # fsynced: a row must never reach the disk before the shard it points into.
        self.table = ENTRIES.appender(folder / TABLE, durable=True)
        self.pending: list[tuple[VideoResult, VideoFeatures, Extents | None]] = []

    def has(self, path: str) -> bool:
        """Whether ``path`` (relative to the current folder, or absolute) is already in the index."""
        return os.path.abspath(path) in self.done

    def add(self, result: VideoResult, features: VideoFeatures | None, windows: Extents | None = None) -> None:
        """Queue one video's features (one row per window of ``windows``, else one), written
        with its shard, or write its error row now. A video's rows go into one shard."""
        if features is None:
            self._write_rows([_entry_record(_entry(result, None, None))])
            return
        self.pending.append((result, features, windows))
        if sum(len(features) for _, features, _ in self.pending) >= (
            SHARD_VIDEOS if windows is None else SHARD_WINDOWS
        ):
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        shard = self.next_shard
        dtype = str(self.manifest["dtype"])
        embeds = np.concatenate([features.embeds for _, features, _ in self.pending])
        patches = np.concatenate([features.patches for _, features, _ in self.pending])
        save_array_atomic(self.folder / f"embeds-{shard:05d}.npy", embeds)  # float32: 2% of a window, read whole
        save_array_atomic(self.folder / f"patches-{shard:05d}.npy", patches, dtype)
        records, row = [], 0
        for result, _, windows in self.pending:
            rows: list[tuple[float, float] | None] = list(windows) if windows is not None else [None]
            for window in rows:
                records.append(_entry_record(_entry(result, shard, row, window, len(windows) if windows else None)))
                row += 1
        self._write_rows(records)
        self.pending = []
        self.next_shard += 1

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.table.close()
            self.lock.close()

    def _write_rows(self, records: list[dict[str, object]]) -> None:
        self.table.write_rows([ENTRIES.row(record) for record in records])
        self.done.update(str(record["path"]) for record in records)

    def _trim_unlisted_shards(self) -> None:
        """Shards written by a run killed before their rows: their videos will be redone."""
        for item in self.folder.iterdir():
            match = SHARD_FILE.match(item.name)
            if match and int(match.group(2)) >= self.next_shard:
                item.unlink()


def indexed_paths(
    folder: Path,
    model: str,
    precision: str,
    sampling: str = "exact",
    windows: str = WHOLE_VIDEOS,
    dtype: str = "float32",
) -> set[str]:
    """Absolute paths already in the index at ``folder`` (none if there is no index yet).

    Checked before any model loads: an index built with another checkpoint, precision,
    sampling or windows is refused with ``UsageError`` (adding to it would mix two kinds of features).
    """
    if not (folder / MANIFEST).exists():
        return set()
    run = {"model": model, "precision": precision, "sampling": sampling, "windows": windows, "dtype": dtype}
    refuse_other_settings(folder, [read_manifest(folder)], SETTINGS, run, ADD_REMEDY)
    return {os.path.abspath(entry.path) for entry in _complete(read_entries(folder))}


class Index:
    """A finished (or partly built) index, read for scoring."""

    def __init__(self, folder: Path) -> None:
        if not (folder / MANIFEST).is_file() or not (folder / TABLE).is_file():
            raise UsageError(f"{folder}: not an xclip index (no {MANIFEST} and {TABLE}); build one with xclip embed")
        self.folder = folder
        self.manifest = read_manifest(folder)
        self.entries = _complete(read_entries(folder))
        self._embeds: tuple[dict[int, int], np.ndarray] | None = None  # by ``embeddings``
        self._patches: dict[int, np.ndarray] = {}  # shard -> its patches, memory-mapped once

    @property
    def model(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def windowed(self) -> bool:
        return self.windows != WHOLE_VIDEOS

    @property
    def windows(self) -> str:
        """How the videos were cut into windows (``WHOLE_VIDEOS``: they were not)."""
        return str(self.manifest.get("windows", WHOLE_VIDEOS))

    @property
    def sampling(self) -> str:
        return str(self.manifest.get("sampling", "exact"))  # indexes from before --sampling: exact

    def check_whole_videos(self) -> None:
        """``UsageError`` for a windowed index, whose rows are windows, not videos."""
        if self.windowed:
            raise UsageError(f"{self.folder}: holds windows ({self.windows}), not whole videos; search it for moments")

    def check_runner(self, runner: Backend) -> None:
        """Refuse to score with a model whose vision side did not make the stored features."""
        made = _made(self.manifest, runner)
        precision = made.get("precision") or "fp32"
        remedy = f"score it with the same (--model {self.model} --precision {precision})"
        run = {"precision": runner.precision, "vision_fingerprint": runner.vision_fingerprint()}
        refuse_other_settings(self.folder, [made], SETTINGS, run, remedy)

    def features(self, entries: list[IndexEntry]) -> VideoFeatures:
        """The stored features of ``entries`` (all ``ok``), as float32: the embeddings from
        ``embeddings`` (read once), the patches from their memory-mapped shards."""
        return VideoFeatures(self.embeddings(entries), self._patch_rows(entries))

    def embeddings(self, entries: list[IndexEntry]) -> np.ndarray:
        """The unit video embeddings of ``entries`` (all ``ok``): (entries, D) float32, not to be
        changed. Every shard's embeddings are read once, in order, and kept (a first pass over
        all windows)."""
        if self._embeds is None:
            shards = sorted({entry.shard for entry in self.entries if entry.shard is not None})
            parts = [np.load(self.folder / f"embeds-{shard:05d}.npy") for shard in shards]
            starts = np.cumsum([0, *(len(part) for part in parts)])
            self._embeds = (dict(zip(shards, starts.tolist(), strict=False)), np.concatenate(parts, dtype=np.float32))
        first, stored = self._embeds
        positions = np.fromiter((first[entry.shard] + entry.row for entry in entries), np.int64, len(entries))  # type: ignore[index,operator]
        if len(positions) == len(stored) and np.array_equal(positions, np.arange(len(stored))):
            return stored  # every window in order (a first pass): the array itself, 200 MB not copied
        return stored[positions]

    def _patch_rows(self, entries: list[IndexEntry]) -> np.ndarray:
        shards = np.array([entry.shard for entry in entries], dtype=np.int64)
        rows = np.array([entry.row for entry in entries], dtype=np.int64)
        parts: list[np.ndarray] = []
        positions: list[np.ndarray] = []
        for shard in np.unique(shards).tolist():
            if shard not in self._patches:
                self._patches[shard] = np.load(self.folder / f"patches-{shard:05d}.npy", mmap_mode="r")
            where = np.flatnonzero(shards == shard)
            parts.append(np.asarray(self._patches[shard][rows[where]], dtype=np.float32))
            positions.append(where)
        if not parts:
            raise ValueError("no entries to read")
        out = np.empty((len(entries), *parts[0].shape[1:]), dtype=np.float32)
        for where, part in zip(positions, parts, strict=True):
            out[where] = part
        return out


def score_index(
    runner: Backend, index: Index, labelset: LabelSet, top_k: int = 5, multi_label: bool = False
) -> Iterator[VideoResult]:
    """One result per indexed video, as ``classify`` would give it, without decoding anything."""
    index.check_whole_videos()
    index.check_runner(runner)
    # The index keeps how frames were sampled, not how many were keyframe substitutes.
    sampled: dict[str, Any] = {
        "sampling": index.sampling,
        "keyframe_substitutes": 0 if index.sampling == "exact" else None,
    }
    text_features = scoring_text_features(runner, labelset, multi_label)
    for chunk in _chunks(index.entries, SCORE_CHUNK):
        ok = [entry for entry in chunk if entry.status == "ok"]
        logits = runner.logits_from_features(index.features(ok), text_features) if ok else None
        position = {entry.path: row for row, entry in enumerate(ok)}
        for entry in chunk:
            if entry.status != "ok" or logits is None:
                yield labelled_result(entry.path, index.model, runner.precision, labelset, error=entry.error, **sampled)
                continue
            yield labelled_result(
                entry.path,
                index.model,
                runner.precision,
                labelset,
                **result_scores(logits[position[entry.path]][None], labelset, top_k, multi_label),
                duration=entry.duration,
                width=entry.width,
                height=entry.height,
                **sampled,
            )


def search_index(runner: Backend, index: Index, query: str, top_k: int = 10) -> list[SearchHit]:
    """Indexed videos ranked by X-CLIP's score for ``query`` (prompt generator included), best first.

    The score is the logit ``classify`` reports for that text: the scaled cosine similarity of
    the video and the text conditioned on that video.
    """
    index.check_whole_videos()
    index.check_runner(runner)
    text_features = runner.text_features([query])
    scored: list[SearchHit] = []
    ok = [entry for entry in index.entries if entry.status == "ok"]
    for chunk in _chunks(ok, SCORE_CHUNK):
        logits = runner.logits_from_features(index.features(chunk), text_features)[:, 0]
        scored += [SearchHit(entry.path, float(score)) for entry, score in zip(chunk, logits.tolist(), strict=True)]
    scored.sort(key=lambda hit: -hit.score)
    return scored[:top_k]


def _run(manifest: dict[str, Any]) -> dict[str, str]:
    """What a run that would write ``manifest`` uses, as ``SETTINGS`` compares it."""
    return {setting.key: str(manifest[setting.key]) for setting in SETTINGS}


def _made(manifest: dict[str, Any], runner: Backend) -> dict[str, Any]:
    """The manifest, with a fingerprint xclip-cli 0.1.0 computed for ``runner``'s vision side
    (torch's threaded sums) read as today's."""
    if manifest.get("vision_fingerprint") == runner.vision_fingerprint(legacy=True):
        return manifest | {"vision_fingerprint": runner.vision_fingerprint()}
    return manifest


def read_entries(folder: Path) -> list[IndexEntry]:
    """The index's rows (a row cut off by a kill is left out)."""
    return [  # positional, in ENTRIES' column order: 100,000 windows open in well under a second
        IndexEntry(
            path,
            status,
            int(shard) if shard else None,
            int(row) if row else None,
            float(duration) if duration else None,
            int(width) if width else None,
            int(height) if height else None,
            error or None,
            float(start) if start else None,
            float(end) if end else None,
            int(windows) if windows else None,
        )
        for path, status, shard, row, duration, width, height, error, start, end, windows in ENTRIES.rows(
            folder / TABLE
        )
    ]


def _complete(entries: list[IndexEntry]) -> list[IndexEntry]:
    """``entries`` without the rows of a video whose windows did not all reach the table."""
    count = Counter(entry.path for entry in entries)
    return [entry for entry in entries if entry.windows is None or count[entry.path] == entry.windows]


def _entry(
    result: VideoResult, shard: int | None, row: int | None, window: tuple[float, float] | None = None,
    windows: int | None = None,
) -> IndexEntry:  # fmt: skip
    start, end = window if window is not None else (None, None)
    return IndexEntry(
        os.path.abspath(result.path), result.status, shard, row, result.duration, result.width, result.height,
        result.error, start, end, windows,
    )  # fmt: skip


def _entry_record(entry: IndexEntry) -> dict[str, object]:
    """``entry`` as a row of the table (times to the millisecond, as timelines give them)."""
    seconds = {"duration": entry.duration, "start": entry.start, "end": entry.end}
    cells: dict[str, object] = {key: "" if value is None else f"{value:.3f}" for key, value in seconds.items()}
    numbers = {"shard": entry.shard, "row": entry.row, "width": entry.width, "height": entry.height}
    numbers |= {"windows": entry.windows}
    cells |= {key: "" if value is None else value for key, value in numbers.items()}
    return {"path": entry.path, "status": entry.status, "error": entry.error or "", **cells}


def read_manifest(folder: Path) -> dict[str, object]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{folder / MANIFEST}: unreadable index manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(f"{folder / MANIFEST}: not an xclip index of format {FORMAT}")
    return manifest


def _write_json(path: Path, data: dict[str, object]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def _chunks(items: list[IndexEntry], size: int) -> Iterable[list[IndexEntry]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
