"""What happens when: classify sliding windows of one video, in one decoding pass.

Windows of ``window`` seconds start every ``stride`` seconds; each gets the checkpoint's T
frames at the centres of its T segments (the same protocol as a whole-video classify). The
video is decoded once, front to back: frames are preprocessed as they arrive, a window is
scored as soon as its last frame is in, and frames no later window needs are dropped, so
memory stays bounded on hour-long inputs.

Consecutive windows with the same top label merge into segments. Each window owns the stretch
of time closest to its centre (the first from 0, the last to the end), so merged segments tile
the video without overlaps.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np

from xclip_cli.errors import VideoError
from xclip_cli.jobs.classify import scoring_text_features
from xclip_cli.jobs.tagging import tag_scores, thresholds
from xclip_cli.labels import LabelSet
from xclip_cli.media.decode import VideoReader, fill_missing
from xclip_cli.media.preprocess import preprocess_frame
from xclip_cli.media.sampling import TIME_EPSILON, SamplingPlan, plan_keyframe_views, plan_segment_centres
from xclip_cli.media.shots import detect_cuts, shot_windows
from xclip_cli.media.thumbnails import thumbnail
from xclip_cli.model.backend import Backend, softmax
from xclip_cli.options import TimelineOptions, check_windows
from xclip_cli.results import Timeline, Window

Scored = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]  # a window's probabilities, logits, tag scores

FRAME_SPACING = 1.0  # seconds between sampled frames in a default window: T frames -> T seconds
TRIM_EVERY_WINDOWS = 32  # about two minutes of video with the default windows
PREFETCH_FRAMES = 32  # preprocessed frames decoded ahead of the model (about 20 MB at 224 px)


def window_extents(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """(start, end) of every window: every ``stride`` seconds, plus one ending at the end.

    The last regular window may stop short of the end; a final window then ends exactly at
    the end, so the close of the video is always classified. A video shorter than a window
    is one window.
    """
    check_windows(window, stride)
    if duration <= window + TIME_EPSILON:
        return [(0.0, float(duration))]
    extents = []
    start = 0.0
    while start + window <= duration + TIME_EPSILON:
        extents.append((start, start + window))
        start = float(len(extents) * stride)  # no accumulated float error
    if extents[-1][1] < duration - TIME_EPSILON:
        extents.append((float(duration - window), float(duration)))
    return extents


def build_timeline(
    runner: Backend,
    path: str,
    labelset: LabelSet,
    options: TimelineOptions = TimelineOptions(),
    on_progress: Callable[[float, float], None] | None = None,
) -> Timeline:
    """Classify every window of ``path``; ``on_progress(seconds_done, duration)`` as it goes."""
    window, stride = window_and_stride(options, runner.num_frames)
    text_features = scoring_text_features(runner, labelset, options.multi_label)
    with VideoReader(path, options.timeout) as reader:
        extents, cuts = window_extents_of(reader, window, stride, options.shots)
        with decoded_windows(runner, reader, extents) as (_, pixels):
            scored, warnings, thumbnails = _score_windows(
                runner, pixels, text_features, len(labelset), options, extents, on_progress
            )
            if on_progress is not None:
                on_progress(reader.duration, reader.duration)
        duration = reader.duration
        warnings = list(reader.warnings()) + sorted(set(warnings))
        if cuts == () and duration > window:
            warnings.append(f"--shots found no cut: one shot, split into windows of at most {window:g} s")
    owned = extents if cuts is not None else _owned_stretches(extents, duration)  # shot windows tile already
    windows = tuple(
        Window(start, end, owns_from, owns_to, probabilities, logits, thumbnail, tags)
        for (start, end), (owns_from, owns_to), (probabilities, logits, tags), thumbnail in zip(
            extents, owned, scored, thumbnails, strict=True
        )
    )
    return Timeline(
        path=path,
        model=runner.model_id,
        labelset=labelset.name,
        duration=duration,
        window=window,
        stride=stride,
        windows=windows,
        labels=tuple(labelset.names),
        warnings=tuple(warnings),
        shots=cuts,
        thresholds=tuple(thresholds(labelset)) if options.multi_label else None,
    )


def window_and_stride(options: TimelineOptions, num_frames: int) -> tuple[float, float]:
    """The window and stride ``options`` ask for, with the defaults filled in: the checkpoint's
    ``num_frames`` x ``FRAME_SPACING`` seconds, every half window. ``UsageError`` for a given
    --stride beyond the default window."""
    window = options.window if options.window is not None else num_frames * FRAME_SPACING
    stride = options.stride if options.stride is not None else window / 2
    check_windows(window, stride)
    return window, stride


def window_extents_of(
    reader: VideoReader, window: float, stride: float, shots: bool = False
) -> tuple[list[tuple[float, float]], tuple[float, ...] | None]:
    """The windows of an opened video (``window_extents``, or with ``shots`` ``shot_windows``
    between the cuts PySceneDetect finds) and the cuts (None without ``shots``)."""
    if not shots:
        return window_extents(reader.duration, window, stride), None
    cuts = tuple(detect_cuts(reader.name, reader.times))
    return shot_windows(cuts, reader.duration, window), cuts


@contextlib.contextmanager
def decoded_windows(
    runner: Backend, reader: VideoReader, extents: list[tuple[float, float]], sampling: str = "exact"
) -> Iterator[tuple[list[SamplingPlan], Iterator[tuple[np.ndarray, list[str]]]]]:
    """Each window's plan (the frames ``classify --start --end`` of it would take, or with
    ``sampling="keyframes"`` nearby keyframes) and its (T, 3, H, W) pixels with warnings, in
    order, from one decoding pass run a bounded queue ahead in a thread."""
    keyframes = reader.keyframes if sampling == "keyframes" else ()
    plans = [
        plan_keyframe_views(reader.times, keyframes, runner.num_frames, 1, start, end)[0]
        if keyframes
        else plan_segment_centres(reader.times, runner.num_frames, start, end)
        for start, end in extents
    ]
    decoded = reader.decode(
        sorted({i for plan in plans for i in plan.frame_indices}), partial(preprocess_frame, config=runner.preprocess)
    )
    with _Prefetch(decoded, PREFETCH_FRAMES) as frames:
        yield plans, _window_pixels(reader.name, [plan.frame_indices for plan in plans], frames)


def _score_windows(
    runner: Backend,
    pixels: Iterator[tuple[np.ndarray, list[str]]],
    text_features: np.ndarray,
    num_labels: int,
    options: TimelineOptions,
    extents: list[tuple[float, float]],
    on_progress: Callable[[float, float], None] | None = None,
) -> tuple[list[Scored], list[str], list[bytes]]:
    """(probabilities, logits) of every window, scored in batches as their frames come in; the
    warnings; a JPEG of each window's middle frame (empty unless ``options.thumbnails``)."""
    scored: list[Scored] = []
    warnings: list[str] = []
    thumbnails: list[bytes] = []
    batch: list[np.ndarray] = []
    for window, warning in pixels:
        warnings += warning
        thumbnails.append(thumbnail(window[len(window) // 2], runner.preprocess) if options.thumbnails else b"")
        batch.append(window)
        if len(batch) >= max(1, options.batch_size):
            scored += _score(runner, batch, text_features, num_labels)
            batch = []
            if len(scored) % TRIM_EVERY_WINDOWS < max(1, options.batch_size):
                _return_free_memory()
            if on_progress is not None:
                on_progress(extents[len(scored) - 1][1], extents[-1][1])
    scored += _score(runner, batch, text_features, num_labels)
    return scored, warnings, thumbnails


class _Prefetch:
    """Runs an iterator in a thread, a bounded queue ahead: decoding overlaps the model.

    PyAV, Pillow and the backends release the GIL, so on 2 cores the decoder and the vision encoder run side by
    side. An exception in the thread is raised in the consumer; leaving early stops the thread.
    """

    _DONE = object()

    def __init__(self, items: Iterator[Any], size: int) -> None:
        self.items = items
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="xclip-timeline-decode", daemon=True)

    def __enter__(self) -> Iterator[Any]:
        self.thread.start()
        return self._consume()

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self.queue.get_nowait()
            self.thread.join(timeout=0.05)

    def _produce(self) -> None:
        try:
            for item in self.items:
                if not self._put(item):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def _put(self, item: object) -> bool:
        """Queue ``item``, waiting for room; ``False`` when the consumer has gone."""
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _consume(self) -> Iterator[Any]:
        while True:
            item = self.queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


def _return_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc only).

    Frames are allocated in the decoding thread and freed in this one; glibc keeps such memory
    in its arenas, and over a long video the process grew by about 10 MB per minute of video
    (1.37 -> 1.66 GB over 30 minutes, benchmarks/bench_timeline.py). Trimming now and then keeps
    it flat.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _glibc() -> Any:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (musl has no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


def _window_pixels(
    name: str, windows: list[tuple[int, ...]], frames: Iterator[tuple[int, np.ndarray]]
) -> Iterator[tuple[np.ndarray, list[str]]]:
    """(T, 3, H, W) pixels of each window, in order, as soon as the decoding has passed it.

    Only frames that a window not yet handed out still needs are kept.
    """
    buffer: dict[int, np.ndarray] = {}
    position = -1  # the last frame index the decoder has handed over
    exhausted = False
    for indices in windows:
        while not exhausted and position < max(indices):
            item = next(frames, None)
            if item is None:
                exhausted = True
                break
            position, pixels = item
            buffer[position] = pixels
        wanted = sorted(set(indices))
        available = {i: buffer[i] for i in wanted if i in buffer}
        if len(available) * 2 >= len(wanted):
            warning = list(fill_missing(name, wanted, available))
        else:  # a badly damaged stretch: say so, and let the nearest frames kept stand in
            if not buffer:
                raise VideoError(name, "no frame could be decoded")
            for index in wanted:
                available.setdefault(index, buffer[min(buffer, key=lambda have: abs(have - index))])
            warning = ["some windows have fewer than half their frames (damaged data); nearest frames used"]
        yield np.stack([available[i] for i in indices]), warning
        # Drop what no later window needs, but keep the newest frame: if the rest of the video
        # does not decode, it stands in for the windows there.
        keep_from = min(indices)
        for index in [i for i in buffer if i < keep_from and i != position]:
            del buffer[index]


def _score(runner: Backend, batch: list[np.ndarray], text_features: np.ndarray, num_labels: int) -> list[Scored]:
    """(probabilities, logits, tag scores or None) of each window in ``batch``; text features
    past ``num_labels`` are background prompts (--multi-label)."""
    if not batch:
        return []
    logits = runner.video_logits(np.stack(batch), text_features)
    own = logits[:, :num_labels]
    tags = list(tag_scores(logits, num_labels)) if logits.shape[1] > num_labels else [None] * len(batch)
    return list(zip(softmax(own), own, tags, strict=True))


def _owned_stretches(extents: list[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """Split the video at the midpoints between window centres: each window owns the part nearest it."""
    centres = [(start + end) / 2 for start, end in extents]
    cuts = [0.0] + [(a + b) / 2 for a, b in itertools.pairwise(centres)] + [duration]
    return list(itertools.pairwise(cuts))
