"""``xclip embed``: decode and encode videos once into an index, whole or window by window.

Whole videos (``embed_videos``): one view each, as ``classify`` samples it. Windows
(``embed_windows``, ``--windows``): each video is decoded once, front to back
(``timeline.decoded_windows``), and the vision side of every window (what X-CLIP's head needs
to score any text later) is stored with the window's start and end, a video's rows all in one
shard. ``plan_embedding`` checks an existing index against the run before any model loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xclip_cli.errors import UsageError, VideoError
from xclip_cli.jobs.classify import frames_in_order, view_pixels
from xclip_cli.jobs.index import MANIFEST, WHOLE_VIDEOS, IndexWriter, indexed_paths, read_manifest
from xclip_cli.jobs.timeline import decoded_windows, window_and_stride, window_extents_of
from xclip_cli.media.decode import VideoReader
from xclip_cli.model.backend import Backend, VideoFeatures
from xclip_cli.options import ClassifyOptions, TimelineOptions
from xclip_cli.results import VideoResult

DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class EmbedPlan:
    """An embedding checked before any model loads: the index, what it is cut into, what is left."""

    folder: Path
    todo: tuple[str, ...]
    options: ClassifyOptions
    windows: TimelineOptions | None  # None: whole videos
    dtype: str
    overwrite: bool

    def run(self, runner: Backend) -> Iterator[VideoResult]:
        """Embed ``todo`` (a result per video, each stored before the next starts)."""
        setting = window_setting(self.windows, runner.num_frames) if self.windows is not None else WHOLE_VIDEOS
        writer = IndexWriter(self.folder, runner, self.overwrite, self.options.sampling, setting, self.dtype)
        try:
            todo = [path for path in self.todo if not writer.has(path)]
            if self.windows is None:
                yield from embed_videos(runner, todo, writer, self.options)
            else:
                yield from embed_windows(runner, todo, writer, self.windows, self.options)
        finally:
            writer.close()


def plan_embedding(
    folder: Path,
    paths: Sequence[str],
    model: str,
    precision: str,
    options: ClassifyOptions,
    windows: TimelineOptions | None = None,
    dtype: str | None = None,
    overwrite: bool = False,
) -> EmbedPlan:
    """What is left to embed into ``folder``; ``UsageError`` for an index made otherwise (another
    model, precision, sampling, windows or dtype). ``dtype`` defaults to float16 for windows
    (half the size; see docs/index-and-search.md for what it costs), float32 for whole videos."""
    manifest = read_manifest(folder) if not overwrite and (folder / MANIFEST).exists() else None  # resumed
    if dtype is None and manifest is not None:  # as it was made
        dtype = str(manifest.get("dtype", "float32"))
    dtype = dtype or ("float16" if windows is not None else "float32")
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    done: set[str] = set()
    if manifest is not None:
        num_frames = int(str(manifest.get("num_frames", 8)))  # the index's model, checked next
        setting = window_setting(windows, num_frames) if windows is not None else WHOLE_VIDEOS
        done = indexed_paths(folder, model, precision, options.sampling, setting, dtype)
    todo = tuple(path for path in paths if os.path.abspath(path) not in done)
    return EmbedPlan(folder, todo, options, windows, dtype, overwrite)


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
            result = _failed(runner, path, loaded, options)
            writer.add(result, None)
            yield result
            continue
        features = _stored(runner.video_features(view_pixels(loaded)))
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


def _stored(raw: VideoFeatures) -> VideoFeatures:
    """Features as an index keeps them: embeddings unit-length, ready for any cosine search (the
    head normalises anyway)."""
    return VideoFeatures(raw.embeds / np.linalg.norm(raw.embeds, axis=-1, keepdims=True), raw.patches)


def _failed(runner: Backend, path: str, error: VideoError, options: ClassifyOptions) -> VideoResult:
    return VideoResult(
        path=path, model=runner.model_id, precision=runner.precision, error=error.reason, sampling=options.sampling
    )


def window_setting(windows: TimelineOptions, num_frames: int) -> str:
    """How an index cuts videos into windows, as its manifest records it ("8s every 4s",
    "shots, at most 8s"); defaults as ``xclip timeline``'s: T seconds, every half window."""
    window, stride = window_and_stride(windows, num_frames)
    return f"shots, at most {window:g}s" if windows.shots else f"{window:g}s every {stride:g}s"


def embed_windows(
    runner: Backend,
    paths: Iterable[str],
    writer: IndexWriter,
    windows: TimelineOptions,
    options: ClassifyOptions | None = None,
) -> Iterator[VideoResult]:
    """Decode each video once and store the vision side of each of its windows; yields a
    result per path (an error result for a file that cannot be read). ``options`` supplies
    the sampling and the timeout; the writer must have been opened with the same settings."""
    options = options or ClassifyOptions()
    window, stride = window_and_stride(windows, runner.num_frames)
    for path in paths:
        try:
            extents, features, result = _embed_one(runner, path, window, stride, windows.shots, options)
        except VideoError as error:
            result = _failed(runner, path, error, options)
            writer.add(result, None)
            yield result
            continue
        writer.add(result, features, extents)
        yield result


def _embed_one(
    runner: Backend, path: str, window: float, stride: float, shots: bool, options: ClassifyOptions
) -> tuple[list[tuple[float, float]], VideoFeatures, VideoResult]:
    embeds, patches, warnings, substitutes = [], [], [], 0
    with VideoReader(path, options.timeout) as reader:
        extents, _ = window_extents_of(reader, window, stride, shots)
        if not extents:
            raise VideoError(path, "no window to embed (the video has no duration)")
        with decoded_windows(runner, reader, extents, options.sampling) as (plans, pixels):
            for pixel_values, warning in pixels:
                stored = _stored(runner.video_features(pixel_values[None]))
                embeds.append(stored.embeds)
                patches.append(stored.patches)
                warnings += warning
        info = reader.info()
        warnings = [*reader.warnings(), *sorted(set(warnings))]
        substitutes = sum(plan.substitutes for plan in plans)
    result = VideoResult(
        path=path,
        model=runner.model_id,
        precision=runner.precision,
        duration=info.duration,
        width=info.width,
        height=info.height,
        warnings=tuple(warnings),
        sampling=options.sampling,
        keyframe_substitutes=substitutes,
    )
    return extents, VideoFeatures(np.concatenate(embeds), np.concatenate(patches)), result
