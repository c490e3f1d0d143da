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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xclip_cli.errors import OutputError, UsageError, VideoError
from xclip_cli.jobs.classify import frames_in_order, labelled_result, result_scores, scoring_text_features, view_pixels
from xclip_cli.labels import LabelSet
from xclip_cli.model.backend import Backend, VideoFeatures
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import SearchHit, VideoResult
from xclip_cli.store.atomic import save_array_atomic, write_text_atomic
from xclip_cli.store.locks import exclusive
from xclip_cli.store.settings import Setting, refuse_other_settings, same_model
from xclip_cli.store.table import Schema

FORMAT = 1
MANIFEST = "index.json"
TABLE = "videos.csv"
ENTRIES = Schema("xclip index table", ("path", "status", "shard", "row", "duration", "width", "height", "error"))
# What the features depend on, as the manifest records it: adding to an index, or scoring it,
# with other settings would mix or misread two kinds of features.
SETTINGS = (
    Setting("model", "--model", same=same_model),
    Setting("precision", "--precision", old="fp32"),
    Setting("sampling", "--sampling", old="exact"),  # indexes from before --sampling: exact
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
SCORE_CHUNK = 256  # videos per prompt-generator call when scoring an index


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


class IndexWriter:
    """Appends videos to an index folder (created, or resumed when it holds the same checkpoint)."""

    def __init__(self, folder: Path, runner: Backend, overwrite: bool = False, sampling: str = "exact") -> None:
        self.folder = folder
        self.manifest = {
            "format": FORMAT,
            "model": runner.model_id,
            "vision_fingerprint": runner.vision_fingerprint(),
            "num_frames": runner.num_frames,
            "precision": runner.precision,
            "paths": "absolute",
            "sampling": sampling,
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create the index folder ({exc.strerror or exc})") from None
        self.lock = contextlib.ExitStack()  # two writers would mix shards
        self.lock.enter_context(exclusive(folder, lock=folder / LOCK))
        if overwrite:
            for item in folder.iterdir():
                if item.name in (MANIFEST, TABLE) or SHARD_FILE.match(item.name):
                    item.unlink()
        existing = _read_manifest(folder) if (folder / MANIFEST).exists() else None
        if existing is not None:
            refuse_other_settings(folder, [_made(existing, runner)], SETTINGS, _run(self.manifest), ADD_REMEDY)
        else:
            _write_json(folder / MANIFEST, self.manifest)
        entries = read_entries(folder)
        # Relative paths (older indexes) meant the folder embed ran in: this one, if resumed from it.
        self.done = {os.path.abspath(entry.path) for entry in entries}
        self.next_shard = max((entry.shard for entry in entries if entry.shard is not None), default=-1) + 1
        self._trim_unlisted_shards()
        # fsynced: a row must never reach the disk before the shard it points into.
        self.table = ENTRIES.appender(folder / TABLE, durable=True)
        self.pending: list[tuple[VideoResult, VideoFeatures]] = []

    def has(self, path: str) -> bool:
        """Whether ``path`` (relative to the current folder, or absolute) is already in the index."""
        return os.path.abspath(path) in self.done

    def add(self, result: VideoResult, features: VideoFeatures | None) -> None:
        """Queue one video's features (written with its shard), or write its error row now."""
        if features is None:
            self._write_rows([(result, None, None)])
            return
        self.pending.append((result, features))
        if len(self.pending) >= SHARD_VIDEOS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        shard = self.next_shard
        embeds = np.concatenate([features.embeds for _, features in self.pending])
        patches = np.concatenate([features.patches for _, features in self.pending])
        save_array_atomic(self.folder / f"embeds-{shard:05d}.npy", embeds)
        save_array_atomic(self.folder / f"patches-{shard:05d}.npy", patches)
        self._write_rows([(result, shard, row) for row, (result, _) in enumerate(self.pending)])
        self.pending = []
        self.next_shard += 1

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.table.close()
            self.lock.close()

    def _write_rows(self, rows: list[tuple[VideoResult, int | None, int | None]]) -> None:
        table = []
        for result, shard, row in rows:
            path = os.path.abspath(result.path)
            table.append(
                [
                    path,
                    result.status,
                    "" if shard is None else shard,
                    "" if row is None else row,
                    "" if result.duration is None else f"{result.duration:.3f}",
                    "" if result.width is None else result.width,
                    "" if result.height is None else result.height,
                    result.error or "",
                ]
            )
            self.done.add(path)
        self.table.write_rows(table)

    def _trim_unlisted_shards(self) -> None:
        """Shards written by a run killed before their rows: their videos will be redone."""
        for item in self.folder.iterdir():
            match = SHARD_FILE.match(item.name)
            if match and int(match.group(2)) >= self.next_shard:
                item.unlink()


def indexed_paths(folder: Path, model: str, precision: str, sampling: str = "exact") -> set[str]:
    """Absolute paths already in the index at ``folder`` (none if there is no index yet).

    Checked before any model loads: an index built with another checkpoint, precision or
    sampling is refused with ``UsageError`` (adding to it would mix two kinds of features).
    """
    if not (folder / MANIFEST).exists():
        return set()
    run = {"model": model, "precision": precision, "sampling": sampling}
    refuse_other_settings(folder, [_read_manifest(folder)], SETTINGS, run, ADD_REMEDY)
    return {os.path.abspath(entry.path) for entry in read_entries(folder)}


class Index:
    """A finished (or partly built) index, read for scoring."""

    def __init__(self, folder: Path) -> None:
        if not (folder / MANIFEST).is_file() or not (folder / TABLE).is_file():
            raise UsageError(f"{folder}: not an xclip index (no {MANIFEST} and {TABLE}); build one with xclip embed")
        self.folder = folder
        self.manifest = _read_manifest(folder)
        self.entries = read_entries(folder)

    @property
    def model(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def sampling(self) -> str:
        return str(self.manifest.get("sampling", "exact"))  # indexes from before --sampling: exact

    def check_runner(self, runner: Backend) -> None:
        """Refuse to score with a model whose vision side did not make the stored features."""
        made = _made(self.manifest, runner)
        precision = made.get("precision") or "fp32"
        remedy = f"score it with the same (--model {self.model} --precision {precision})"
        run = {"precision": runner.precision, "vision_fingerprint": runner.vision_fingerprint()}
        refuse_other_settings(self.folder, [made], SETTINGS, run, remedy)

    def features(self, entries: list[IndexEntry]) -> VideoFeatures:
        """The stored features of ``entries`` (all ``ok``), read from their shards."""
        embeds, patches = [], []
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for entry in entries:
            assert entry.shard is not None and entry.row is not None
            if entry.shard not in cache:
                cache[entry.shard] = (
                    np.load(self.folder / f"embeds-{entry.shard:05d}.npy", mmap_mode="r"),
                    np.load(self.folder / f"patches-{entry.shard:05d}.npy", mmap_mode="r"),
                )
            shard_embeds, shard_patches = cache[entry.shard]
            embeds.append(np.asarray(shard_embeds[entry.row]))
            patches.append(np.asarray(shard_patches[entry.row]))
        return VideoFeatures(embeds=np.stack(embeds), patches=np.stack(patches))


def embed_videos(
    runner: Backend, paths: Iterable[str], writer: IndexWriter, options: ClassifyOptions | None = None
) -> Iterator[VideoResult]:
    """Decode, encode and store each video (one view, centre crop); yields a result per path.

    ``options`` supplies workers, the timeout and the sampling; its clips and crops are ignored
    (one view). The writer must have been opened with the same sampling.
    """
    options = ClassifyOptions() if options is None else options
    options = ClassifyOptions(
        workers=options.workers, timeout=options.timeout, batch_size=options.batch_size, sampling=options.sampling
    )
    for path, loaded in frames_in_order(runner, paths, options):
        if isinstance(loaded, VideoError):
            result = VideoResult(
                path=path,
                model=runner.model_id,
                precision=runner.precision,
                error=loaded.reason,
                sampling=options.sampling,
            )
            writer.add(result, None)
            yield result
            continue
        raw = runner.video_features(view_pixels(loaded))
        # Stored unit-length, ready for any cosine search; the head normalises anyway.
        features = VideoFeatures(raw.embeds / np.linalg.norm(raw.embeds, axis=-1, keepdims=True), raw.patches)
        result = VideoResult(
            path=path,
            model=runner.model_id,
            precision=runner.precision,
            duration=loaded.info.duration,
            width=loaded.info.width,
            height=loaded.info.height,
            warnings=loaded.warnings,
            sampling=options.sampling,
            keyframe_substitutes=loaded.plan.substitutes,
        )
        writer.add(result, features)
        yield result


def score_index(
    runner: Backend, index: Index, labelset: LabelSet, top_k: int = 5, multi_label: bool = False
) -> Iterator[VideoResult]:
    """One result per indexed video, as ``classify`` would give it, without decoding anything."""
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
    """The index's videos (a row cut off by a kill is left out)."""
    rows = [ENTRIES.row(record) for record in ENTRIES.records(folder / TABLE)]
    return [
        IndexEntry(
            path=path,
            status=status,
            shard=int(shard) if shard else None,
            row=int(number) if number else None,
            duration=float(duration) if duration else None,
            width=int(width) if width else None,
            height=int(height) if height else None,
            error=error or None,
        )
        for path, status, shard, number, duration, width, height, error in rows
    ]


def _read_manifest(folder: Path) -> dict[str, object]:
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
