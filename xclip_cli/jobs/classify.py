"""Classify videos: the data path every job shares, decode -> sample -> preprocess -> encode ->
score, and ``classify_videos``, the library's entry point::

    from xclip_cli import classify_videos, open_backend, resolve_labels

    runner = open_backend("microsoft/xclip-base-patch32")
    for result in classify_videos(runner, ["video.mp4"], resolve_labels("kinetics400")):
        print(result.path, result.predictions[0].label)

``index`` (stored features), ``early`` (the first video decoded while the model loads) and the
Ray engine (decoding and scoring in other processes) are built from the same pieces
(``results.rank`` turns scores into the top predictions for all). ``LocalExecutor`` and
``run.ray.RayExecutor`` are the two places a scan can classify.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Protocol

import numpy as np

from xclip_cli.errors import VideoError
from xclip_cli.jobs.tagging import background_prompts, tag_scores, tags_digest, tags_of
from xclip_cli.labels import LabelSet
from xclip_cli.media.decode import SampledVideo, sample_video
from xclip_cli.media.preprocess import PreprocessConfig, preprocess_crops
from xclip_cli.media.thumbnails import video_thumbnails
from xclip_cli.model.backend import Backend, softmax
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult, rank


def scoring_text_features(runner: Backend, labelset: LabelSet, multi_label: bool = False) -> np.ndarray:
    """The label set's text features; with ``multi_label``, the background prompts' after them
    (``tagging.tag_scores`` splits the logits again)."""
    features = runner.label_text_features(labelset)
    if not multi_label:
        return features
    return np.concatenate([features, runner.text_features(background_prompts(labelset))])


def result_scores(logits: np.ndarray, labelset: LabelSet, top_k: int, multi_label: bool) -> dict[str, Any]:
    """A result's fields from one video's (views, labels [+ background]) logits: the top
    predictions (softmax over the label set, averaged over views) and, with ``multi_label``,
    its tags and every label's own score."""
    own = logits[:, : len(labelset)]
    fields: dict[str, Any] = {"predictions": rank(softmax(own).mean(axis=0), own.mean(axis=0), labelset.names, top_k)}
    if multi_label:
        scores = tag_scores(logits, len(labelset)).mean(axis=0)
        fields |= {
            "tags": tags_of(scores, labelset),
            "tags_digest": tags_digest(labelset),
            "label_scores": tuple(scores.tolist()),
        }
    return fields


def labelled_result(path: str, model: str, precision: str, labelset: LabelSet, **fields: Any) -> VideoResult:
    """A result that names how it was made: checkpoint, precision and label set (and its digest)."""
    return VideoResult(
        path=path, model=model, precision=precision, labelset=labelset.name, labelset_digest=labelset.digest, **fields
    )


def score_loaded(
    runner: Backend,
    loaded: Iterable[tuple[str, SampledVideo[np.ndarray] | VideoError]],
    text_features: np.ndarray,
    labelset: LabelSet,
    options: ClassifyOptions,
) -> Iterator[VideoResult]:
    """Results for decoded videos (or their errors), in order, ``batch_size`` videos per model call.

    Decoding can happen elsewhere: the Ray engine's model actors score what its decoders sent.
    """
    pending: list[tuple[str, SampledVideo[np.ndarray]]] = []
    for path, video in loaded:
        if isinstance(video, VideoError):
            yield from _score(runner, pending, text_features, labelset, options)
            pending = []
            yield labelled_result(
                path, runner.model_id, runner.precision, labelset, error=video.reason, sampling=options.sampling
            )
            continue
        pending.append((path, video))
        if len(pending) >= max(1, options.batch_size):
            yield from _score(runner, pending, text_features, labelset, options)
            pending = []
    yield from _score(runner, pending, text_features, labelset, options)


def frames_in_order(
    runner: Backend,
    paths: Iterable[str],
    options: ClassifyOptions,
    ready: Mapping[str, SampledVideo[np.ndarray] | VideoError] | None = None,
) -> Iterator[tuple[str, SampledVideo[np.ndarray] | VideoError]]:
    """Each path with its frames (or its error), in order.

    With ``workers``, upcoming videos are decoded in threads (PyAV, Pillow and numpy release the GIL)
    while the caller runs the model; at most ``workers + batch_size`` videos are in flight, so
    memory stays bounded however many paths there are.
    """
    early = dict(ready or {})

    def load(path: str) -> SampledVideo[np.ndarray] | VideoError:
        return early.pop(path) if path in early else _load_or_error(runner, path, options)

    if options.workers < 1:
        for path in paths:
            yield path, load(path)
        return
    lookahead = options.workers + max(1, options.batch_size)
    with ThreadPoolExecutor(options.workers, thread_name_prefix="xclip-decode") as pool:
        in_flight: deque[tuple[str, Future[SampledVideo[np.ndarray] | VideoError]]] = deque()
        try:
            for path in paths:
                in_flight.append((path, pool.submit(load, path)))
                # Hand over what is ready, not only when the window is full: with a slow stdin
                # list (`find ... | xclip classify -`) a result follows the next path, not the
                # third one after it.
                while in_flight and (len(in_flight) >= lookahead or in_flight[0][1].done()):
                    done_path, future = in_flight.popleft()
                    yield done_path, future.result()
            while in_flight:
                done_path, future = in_flight.popleft()
                yield done_path, future.result()
        finally:
            for _, future in in_flight:
                future.cancel()


def _load_or_error(runner: Backend, path: str, options: ClassifyOptions) -> SampledVideo[np.ndarray] | VideoError:
    try:
        return load_frames(runner, path, options)
    except VideoError as exc:
        return exc


def load_frames(runner: Backend, path: str, options: ClassifyOptions) -> SampledVideo[np.ndarray]:
    """Decode and preprocess the checkpoint's number of frames from ``path``, for every view.

    Each frame becomes a (crops, 3, H, W) float32 array.
    """
    return sample_frames(path, runner.num_frames, runner.preprocess, options)


def sample_frames(
    path: str, num_frames: int, preprocess: PreprocessConfig, options: ClassifyOptions
) -> SampledVideo[np.ndarray]:
    """``load_frames`` without a loaded model: for decoders that run apart from it."""
    return sample_video(
        path,
        num_frames,
        start=options.start,
        end=options.end,
        transform=partial(preprocess_crops, config=preprocess, crops=options.crops),
        timeout=options.timeout,
        views=options.clips,
        sampling=options.sampling,
    )


def view_pixels(video: SampledVideo[np.ndarray]) -> np.ndarray:
    """(clips * crops, T, 3, H, W): one model input per temporal view and crop."""
    per_clip = [np.stack(frames, axis=1) for frames in video.views]  # each (crops, T, 3, H, W)
    return np.concatenate(per_clip)


def _score(
    runner: Backend,
    pending: list[tuple[str, SampledVideo[np.ndarray]]],
    text_features: np.ndarray,
    labelset: LabelSet,
    options: ClassifyOptions,
) -> Iterator[VideoResult]:
    """One vision-side model call for the decoded videos in ``pending``; their results in order."""
    if not pending:
        return
    inputs = [view_pixels(video) for _, video in pending]
    all_logits = runner.video_logits(np.concatenate(inputs), text_features)
    # Multi-view testing: average each video's per-view probabilities (and, for reference, logits).
    per_video = np.split(all_logits, np.cumsum([len(views) for views in inputs])[:-1])
    for row, (path, video) in enumerate(pending):
        yield labelled_result(
            path,
            runner.model_id,
            runner.precision,
            labelset,
            **result_scores(per_video[row], labelset, options.top_k, options.multi_label),
            timestamps=tuple(sorted({time for plan in video.plans for time in plan.timestamps})),
            duration=video.info.duration,
            width=video.info.width,
            height=video.info.height,
            warnings=video.warnings,
            views=len(inputs[row]),
            sampling=options.sampling,
            keyframe_substitutes=sum(plan.substitutes for plan in video.plans),
            thumbnails=video_thumbnails(video, runner.preprocess) if options.thumbnails else (),
        )


def classify_videos(
    runner: Backend,
    paths: Iterable[str],
    labelset: LabelSet,
    options: ClassifyOptions = ClassifyOptions(),
    ready: Mapping[str, SampledVideo[np.ndarray] | VideoError] | None = None,
) -> Iterator[VideoResult]:
    """Yield one result per path, in order; a video that fails yields an error result.

    ``ready`` holds videos already decoded for this runner and these options (``EarlyDecode``).
    """
    text_features = scoring_text_features(runner, labelset, options.multi_label)
    yield from score_loaded(runner, frames_in_order(runner, paths, options, ready), text_features, labelset, options)


class Executor(Protocol):
    """Where videos are classified: this process (``LocalExecutor``) or a Ray cluster
    (``run.ray.RayExecutor``). Both are called alike; a scan takes either."""

    @property
    def model(self) -> str:
        """The checkpoint (id or folder), as results files name it."""
        ...

    @property
    def precision(self) -> str: ...

    def classify(self, paths: Sequence[str], labelset: LabelSet, options: ClassifyOptions) -> Iterator[VideoResult]:
        """One result per path as each finishes; a video that fails gives an error result."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """Classify in this process with the backend that ``load`` opens (when work comes, not
    before; once: a watched scan's later batches use the same)."""

    model: str
    precision: str
    load: Callable[[], Backend]

    @cached_property
    def backend(self) -> Backend:
        return self.load()

    def classify(self, paths: Sequence[str], labelset: LabelSet, options: ClassifyOptions) -> Iterator[VideoResult]:
        return classify_videos(self.backend, paths, labelset, options)
