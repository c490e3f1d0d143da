"""Decode only the sampled frames of a video with PyAV.

Two passes over the file: a demux-only pass reads every video packet's presentation
timestamp and keyframe flag (cheap: no decoding), which gives exact frame times whatever the
header claims; then the planned frames are decoded, seeking to the keyframe before a target
only when that skips work, and decoding forward from there; frames that are neither sampled
nor referenced are skipped by the decoder. Each decoded frame is turned upright (display
rotation) and handed to ``transform`` at once, so at most the T sampled frames, already
transformed, are kept.

Damaged files are handled in the open: a seek that lands late or on a keyframe that is not a
clean entry point is retried from an earlier keyframe, then from the start; a sampled frame
that still cannot be decoded is replaced by its nearest decoded neighbour with a warning (an
error when fewer than half decode); a file whose data stops early says so in a warning.
Streams without timestamps, or whose timestamps restart, are decoded front to back and their
frames counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Generic, TypeVar

import av
import numpy as np

from xclip_cli.errors import VideoError
from xclip_cli.media.probe import check_openable, unreadable_reason
from xclip_cli.media.sampling import SAMPLINGS, SamplingPlan, frame_span, plan_keyframe_views, plan_views
from xclip_cli.media.seeking import Deadline, FrameIndex, SeekingDecoder

T = TypeVar("T")
FALLBACK_RATE = Fraction(25)  # frames per second assumed for a stream without timestamps
# Container formats that hold pictures, not videos: their files are rejected as still images.
IMAGE_FORMATS = ("image2", "gif", "apng", "webp")
END_SLACK = 0.01  # seconds an --end may pass the end unremarked (durations are shown to 2 decimals)
TRUNCATION_SLACK = 0.5  # seconds of declared duration that may be missing without a warning


@dataclass(frozen=True)
class VideoInfo:
    """What the decoder found out about a video, from its packets and frames, not its header."""

    width: int  # as displayed, after rotation
    height: int
    duration: float  # seconds covered by the video's frames
    num_frames: int
    rotation: int  # degrees counter-clockwise applied to reach the upright picture
    codec: str


@dataclass(frozen=True)
class SampledVideo(Generic[T]):
    """The sampled frames (after ``transform``) with the plan that chose them."""

    frames: tuple[T, ...]
    plan: SamplingPlan
    info: VideoInfo
    warnings: tuple[str, ...] = ()  # what was wrong with the file, though it still classified
    views: tuple[tuple[T, ...], ...] = ()  # the frames of every temporal view; views[0] == frames
    plans: tuple[SamplingPlan, ...] = ()  # one per view; plans[0] == plan


class VideoReader:
    """An opened video: frame times from a demux pass, and chosen frames decoded on demand.

    ``times`` are the presentation times of every frame in seconds from the first, in display
    order; ``decode`` yields chosen frames in that order, so a caller can consume and drop them
    as it goes (a timeline of an hour-long video never holds more than its current windows).
    """

    def __init__(self, path: str | Path, timeout: float | None = None) -> None:
        self.name = str(path)
        check_openable(self.name)
        self.deadline = Deadline(self.name, timeout)
        self.rotation = 0
        self.shape = (0, 0)  # (height, width) as displayed, once a frame has been decoded
        with _plain_errors(self.name):
            self.container = av.open(self.name, mode="r")
            try:
                self.stream = _video_stream(self.container, self.name)
                self.index = _index_frames(self.container, self.stream, self.deadline)
            except BaseException:
                self.container.close()
                raise
        self.times = [float((pts - self.index.pts[0]) * self.index.time_base) for pts in self.index.pts]

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.container.close()

    @property
    def duration(self) -> float:
        return frame_span(self.times)

    @property
    def keyframes(self) -> tuple[int, ...]:
        """Indices (display order) of the frames that decode on their own, as the demuxer flagged them.

        Empty when that is unknown, or when the stream is decoded front to back anyway
        (no timestamps, or timestamps that restart): there a keyframe saves nothing.
        """
        if self.index.sequential or not self.index.flagged:
            return ()
        position = {pts: i for i, pts in enumerate(self.index.pts)}
        return tuple(position[pts] for pts in self.index.keyframe_pts if pts in position)

    def decode(self, indices: Iterable[int], transform: Callable[[np.ndarray], T]) -> Iterator[tuple[int, T]]:
        """``(index, transform(upright RGB frame))`` for each chosen frame that decodes, in order.

        Frames that cannot be decoded cleanly are left out; the caller decides what stands in.
        """
        by_pts = {self.index.pts[i]: i for i in set(indices)}
        decoder = SeekingDecoder(self.container, self.stream, self.index, sorted(by_pts), self.deadline)
        with _plain_errors(self.name):
            for pts, frame in decoder.frames():
                self.rotation = _rotation(frame)
                rgb = np.rot90(frame.to_ndarray(format="rgb24"), k=self.rotation // 90)
                self.shape = rgb.shape[:2]
                item = by_pts[pts], transform(np.ascontiguousarray(rgb))
                with self.deadline.paused():
                    yield item

    def warnings(self) -> tuple[str, ...]:
        """What the file's structure says is wrong with it (truncation, damaged data)."""
        return _truncation_warnings(self.stream, self.index, self.duration)

    def info(self) -> VideoInfo:
        height, width = self.shape
        return VideoInfo(
            width=width,
            height=height,
            duration=self.duration,
            num_frames=len(self.times),
            rotation=self.rotation,
            codec=self.stream.codec_context.name,
        )


def sample_video(
    path: str | Path,
    num_frames: int,
    *,
    start: float | None = None,
    end: float | None = None,
    transform: Callable[[np.ndarray], T] = lambda rgb: rgb,  # type: ignore[assignment,return-value]
    timeout: float | None = None,
    views: int = 1,
    sampling: str = "exact",
) -> SampledVideo[T]:
    """Decode ``num_frames`` frames of ``path`` per view, chosen by ``plan_views``.

    ``sampling="keyframes"``: nearby keyframes stand in for exact frames (``plan_keyframe_views``),
    which skips decoding the chains of frames before them; files whose keyframes are unknown
    get exact frames. ``transform`` receives each upright HxWx3 uint8 RGB frame as soon as it
    is decoded.
    Raises ``VideoError`` naming the file when it cannot be opened, is not a video, too few
    frames decode, or ``timeout`` seconds pass.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling {sampling!r}: expected one of {', '.join(SAMPLINGS)}")
    with VideoReader(path, timeout) as reader:
        if start is not None and start >= reader.duration:
            raise VideoError(reader.name, f"--start {start:g} s is not before the end ({reader.duration:.2f} s)")
        if sampling == "keyframes":
            plans = plan_keyframe_views(reader.times, reader.keyframes, num_frames, views, start, end)
        else:
            plans = plan_views(reader.times, num_frames, views, start, end)
        wanted = sorted({i for plan in plans for i in plan.frame_indices})
        decoded = dict(reader.decode(wanted, transform))
        warnings = reader.warnings() + fill_missing(reader.name, wanted, decoded) + _past_the_end(end, reader.duration)
        info = reader.info()
    view_frames = tuple(tuple(decoded[i] for i in plan.frame_indices) for plan in plans)
    return SampledVideo(view_frames[0], plans[0], info, warnings, views=view_frames, plans=plans)


def _past_the_end(end: float | None, duration: float) -> tuple[str, ...]:
    """The warning for an ``--end`` past the video's end, which sampling moved to the end."""
    if end is None or end <= duration + END_SLACK:
        return ()
    return (f"--end {end:g} s is past the end of the video ({duration:.2f} s): sampled up to its end",)


def fill_missing(name: str, wanted: Sequence[int], decoded: dict[int, T]) -> tuple[str, ...]:
    """Stand in the nearest decoded frame for each wanted one that did not decode.

    Returns the warning to report; raises ``VideoError`` when fewer than half decoded.
    """
    missing = [i for i in wanted if i not in decoded]
    if not missing:
        return ()
    if len(missing) * 2 > len(wanted):
        raise VideoError(name, f"damaged: only {len(wanted) - len(missing)} of {len(wanted)} sampled frames decode")
    for index in missing:
        decoded[index] = decoded[min(decoded, key=lambda have: abs(have - index))]
    return (
        f"{len(missing)} of {len(wanted)} sampled frames could not be decoded (damaged data); "
        "their nearest decoded frames were used instead",
    )


@contextlib.contextmanager
def _plain_errors(name: str) -> Iterator[None]:
    """ffmpeg and OS errors become a ``VideoError`` that says what is wrong in plain words."""
    try:
        yield
    except av.FFmpegError as exc:
        raise VideoError(name, _ffmpeg_reason(name, exc)) from None
    except OSError as exc:
        raise VideoError(name, exc.strerror or str(exc)) from None


def _video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        reason = "only a cover picture, no video" if container.streams.video else "no video stream"
        raise VideoError(name, reason)
    stream = streams[0]
    if stream.codec_context is None:
        raise VideoError(name, "no decoder for its video codec in this ffmpeg build (unknown or unsupported codec)")
    format_name = container.format.name
    if format_name == "image2" or format_name.endswith("_pipe"):
        raise VideoError(name, f"a still image ({stream.codec_context.name}), not a video")
    return stream


def stream_rate(stream: av.VideoStream) -> Fraction:
    """Frames per second the stream's header states: ffmpeg's average rate, else its guess, else 25."""
    return Fraction(stream.average_rate or stream.guessed_rate or FALLBACK_RATE)


def _index_frames(container: av.container.InputContainer, stream: av.VideoStream, deadline: Deadline) -> FrameIndex:
    """Read every packet's timestamps and keyframe flag without decoding."""
    packets: list[tuple[int | None, int | None, bool]] = []
    read_error = False
    try:
        for packet in container.demux(stream):
            deadline.check()
            if packet.size:
                packets.append((packet.pts, packet.dts, bool(packet.is_keyframe)))
    except av.FFmpegError:
        read_error = True  # damaged or missing data: index what came before it
    if not packets:
        raise VideoError(container.name, "no video frames found")
    if stream.time_base is None:
        raise VideoError(container.name, "the video stream has no time base")
    timed = [packet for packet in packets if packet[0] is not None]
    if not timed:
        # A raw elementary stream (.h264, .hevc): no timestamps at all, so frames are counted.
        return FrameIndex(list(range(len(packets))), [0], 1 / stream_rate(stream), True, read_error)
    pts, keyframes, restarted = _unwrap_restarts(timed)
    if len(container.streams.video) == 1 and container.format.name in IMAGE_FORMATS and len(pts) == 1:
        raise VideoError(container.name, f"a still image ({container.format.name}), not a video")
    ordered = sorted(set(pts))
    # Without a keyframe flag (rare) we can only decode from the start.
    keyframe_pts = sorted(keyframes) or ordered[:1]
    return FrameIndex(ordered, keyframe_pts, stream.time_base, restarted, read_error, flagged=bool(keyframes))


def _unwrap_restarts(packets: list[tuple[int | None, int | None, bool]]) -> tuple[list[int], set[int], bool]:
    """Presentation timestamps made monotonic across restarts (recordings joined end to end).

    Decode timestamps only grow within a recording, so a drop marks a restart; later
    timestamps are shifted to continue one frame after the last one. Returns the shifted pts (decode
    order), the shifted keyframe pts, and whether any restart was seen.
    """
    offset = 0
    last_dts: int | None = None
    highest: int | None = None
    step = 1
    shifted: list[int] = []
    keyframes: set[int] = set()
    restarted = False
    for pts, dts, is_keyframe in packets:
        assert pts is not None
        # Without decode timestamps a drop cannot be told from B-frame reordering: no unwrapping.
        if dts is not None and last_dts is not None and highest is not None and dts + offset < last_dts:
            restarted = True
            offset = highest + step - pts
        value = pts + offset
        if dts is not None and last_dts is not None and dts + offset > last_dts:
            step = dts + offset - last_dts  # one frame: decode timestamps step by single frames
        highest = value if highest is None else max(highest, value)
        if dts is not None:
            last_dts = dts + offset
        shifted.append(value)
        if is_keyframe:
            keyframes.add(value)
    return shifted, keyframes, restarted


def _truncation_warnings(stream: av.VideoStream, index: FrameIndex, span: float) -> tuple[str, ...]:
    """A warning when the frames cover clearly less than the stream declares, or reading failed."""
    declared = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    if declared is not None and declared - span > max(TRUNCATION_SLACK, 0.05 * declared):
        return (f"truncated or damaged: frames cover only {span:.2f} s of the {declared:.2f} s it declares",)
    if index.read_error:
        return (f"damaged data: reading stopped after {span:.2f} s of video",)
    return ()


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that turn the frame upright."""
    degrees = getattr(frame, "rotation", 0) or 0
    return round(degrees / 90.0) % 4 * 90


def _ffmpeg_reason(name: str, exc: av.FFmpegError) -> str:
    if isinstance(exc, av.InvalidDataError):
        return unreadable_reason(name)
    return getattr(exc, "strerror", None) or str(exc)
