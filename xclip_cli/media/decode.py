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

import bisect
import contextlib
import time
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

T = TypeVar("T")
# PyAV's default: slice threads. Frame threads ("AUTO") measured no faster on one-slice
# 720p H.264 and 2x slower on multi-slice files (benchmarks/bench_classify.py).
THREAD_TYPE = "SLICE"
SEEK_ATTEMPTS = 3  # keyframes tried, going back, before decoding from the start
FALLBACK_RATE = Fraction(25)  # frames per second assumed for a stream without timestamps
# Container formats that hold pictures, not videos: their files are rejected as still images.
IMAGE_FORMATS = ("image2", "gif", "apng", "webp")
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


@dataclass(frozen=True)
class _FrameIndex:
    pts: list[int]  # presentation timestamps in display order, in stream time base (made monotonic)
    keyframe_pts: list[int]  # sorted
    time_base: Fraction
    sequential: bool  # timestamps missing or restarting: decode from the start, count frames
    read_error: bool  # demuxing stopped at damaged or missing data
    flagged: bool = True  # the demuxer marked keyframes (else keyframe_pts is a guess: the first frame)


class _Deadline:
    """A per-file time limit, checked between packets (``None``: no limit)."""

    def __init__(self, name: str, seconds: float | None) -> None:
        self.name = name
        self.seconds = seconds
        self.at = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.at is not None and time.monotonic() > self.at:
            raise VideoError(self.name, f"gave up after {self.seconds:g} s (--timeout)")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent here (the caller busy with a frame, e.g. running the model) does not count."""
        started = time.monotonic()
        try:
            yield
        finally:
            if self.at is not None:
                self.at += time.monotonic() - started


class VideoReader:
    """An opened video: frame times from a demux pass, and chosen frames decoded on demand.

    ``times`` are the presentation times of every frame in seconds from the first, in display
    order; ``decode`` yields chosen frames in that order, so a caller can consume and drop them
    as it goes (a timeline of an hour-long video never holds more than its current windows).
    """

    def __init__(self, path: str | Path, timeout: float | None = None) -> None:
        self.name = str(path)
        check_openable(self.name)
        self.deadline = _Deadline(self.name, timeout)
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
        decoder = _Decoder(self.container, self.stream, self.index, sorted(by_pts), self.deadline)
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
        warnings = reader.warnings() + fill_missing(reader.name, wanted, decoded)
        info = reader.info()
    view_frames = tuple(tuple(decoded[i] for i in plan.frame_indices) for plan in plans)
    return SampledVideo(view_frames[0], plans[0], info, warnings, views=view_frames, plans=plans)


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


def _index_frames(container: av.container.InputContainer, stream: av.VideoStream, deadline: _Deadline) -> _FrameIndex:
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
        rate = stream.average_rate or stream.guessed_rate or FALLBACK_RATE
        return _FrameIndex(list(range(len(packets))), [0], 1 / Fraction(rate), True, read_error)
    pts, keyframes, restarted = _unwrap_restarts(timed)
    if len(container.streams.video) == 1 and container.format.name in IMAGE_FORMATS and len(pts) == 1:
        raise VideoError(container.name, f"a still image ({container.format.name}), not a video")
    ordered = sorted(set(pts))
    # Without a keyframe flag (rare) we can only decode from the start.
    keyframe_pts = sorted(keyframes) or ordered[:1]
    return _FrameIndex(ordered, keyframe_pts, stream.time_base, restarted, read_error, flagged=bool(keyframes))


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


class _Decoder:
    """Decodes the frames whose (unwrapped) pts are in ``wanted``, seeking only when it skips work."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        index: _FrameIndex,
        wanted: list[int],
        deadline: _Deadline,
    ) -> None:
        self.container = container
        self.stream = stream
        self.index = index
        self.wanted = wanted
        self.targets = set(wanted)
        self.keyframes = set(index.keyframe_pts)
        self.deadline = deadline

    def frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """``(pts, frame)`` for each wanted frame that decodes cleanly, in display order."""
        if not self.wanted:
            return
        self.stream.thread_type = THREAD_TYPE
        if self.index.sequential:
            yield from self._take_in_order(self._counted_frames(self._fresh_decode()))
            return
        frames: _Frames | None = None
        from_start = False
        for position, target in enumerate(self.wanted):
            keyframe = self._keyframe_before(target)
            frame = None
            if frames is not None and (from_start or (frames.position is not None and keyframe <= frames.position)):
                frame = frames.exact(target)
            if frame is None and not from_start and self._alone(target, self.wanted[position + 1 :]):
                frame = self._keyframe_alone(target)
                if frame is not None:
                    frames = None  # the decoder was drained: the next target seeks
                    yield target, frame
                    continue
            if frame is None and not from_start:
                for candidate in self._seek_candidates(target):
                    frames = _Frames(self._decode_from(candidate))
                    frame = frames.exact(target)
                    if frame is not None:
                        break
                else:
                    # No seek gave the exact frame: decode forward from the start once, and keep
                    # going from there for every later target.
                    from_start = True
                    frames = _Frames(self._fresh_decode())
                    frame = frames.exact(target)
            if frame is not None:  # else damaged beyond repair: the caller decides what stands in
                yield target, frame

    def _alone(self, target: int, later: list[int]) -> bool:
        """Whether ``target`` is a keyframe no later wanted frame builds on: it can be decoded by itself."""
        keyframes = self.index.keyframe_pts
        if not self.index.flagged or target not in self.keyframes:
            return False
        following = bisect.bisect_right(keyframes, target)
        return not later or (following < len(keyframes) and later[0] >= keyframes[following])

    def _keyframe_alone(self, target: int) -> av.VideoFrame | None:
        """Keyframe ``target`` from its packet alone: seek, decode that one packet, drain the decoder.

        Without draining, a decoder that reorders frames (B-frames) decodes the next few packets
        before it hands the keyframe out: here they would be wasted. ``None`` when the seek
        misses it or it does not decode cleanly (the caller then decodes as usual).
        """
        self.container.seek(target, stream=self.stream, backward=True, any_frame=False)
        codec = self.stream.codec_context
        codec.skip_frame = "DEFAULT"
        decoded: list[av.VideoFrame] = []
        with contextlib.suppress(av.FFmpegError):
            for packet in self.container.demux(self.stream):
                self.deadline.check()
                if packet.pts is not None and packet.pts < target:
                    continue  # the seek landed early: earlier packets are not needed by a keyframe
                if packet.pts == target and packet.is_keyframe:
                    decoded = [*packet.decode(), *codec.decode(None)]
                break
        codec.flush_buffers()  # leave the decoder ready for more after the drain
        return next(
            (frame for frame in decoded if frame.pts == target and not _predicted(frame) and not frame.is_corrupt),
            None,
        )

    def _keyframe_before(self, target: int) -> int:
        keyframes = self.index.keyframe_pts
        return keyframes[max(0, bisect.bisect_right(keyframes, target) - 1)]

    def _seek_candidates(self, target: int) -> list[int]:
        keyframes = self.index.keyframe_pts
        position = max(0, bisect.bisect_right(keyframes, target) - 1)
        return [keyframes[i] for i in range(position, max(-1, position - SEEK_ATTEMPTS), -1)]

    def _decode_from(self, keyframe: int) -> Iterator[tuple[av.VideoFrame, bool]]:
        self.container.seek(keyframe, stream=self.stream, backward=True, any_frame=False)
        return self._decode_skipping(self.container, self.stream)

    def _fresh_decode(self) -> Iterator[tuple[av.VideoFrame, bool]]:
        """A fresh container decoded from the start: seeking cannot be trusted here."""
        with av.open(self.container.name) as container:
            stream = container.streams[self.stream.index]
            assert isinstance(stream, av.VideoStream)
            stream.thread_type = THREAD_TYPE
            yield from self._decode_skipping(container, stream, skip=not self.index.sequential)

    def _decode_skipping(
        self, container: av.container.InputContainer, stream: av.VideoStream, skip: bool = True
    ) -> Iterator[tuple[av.VideoFrame, bool]]:
        """Decode forward, telling the decoder to skip frames that are neither sampled nor referenced.

        Non-reference frames (most B-frames) can be dropped without changing any other frame,
        so only packets of sampled frames are decoded in full. Yields each frame with whether it
        may be damaged: after a packet fails to decode, every frame up to the next keyframe (it
        may be built on the damage); and when the first frame from a keyframe the container
        flagged comes out as a predicted picture (the flag was false), every frame up to one the
        decoder itself calls a keyframe or I-frame. Decoders that say nothing of picture types
        (QuickTime Animation, Cinepak, ...) are trusted with the container's flags.
        """
        codec = stream.codec_context
        packets = container.demux(stream)
        damaged = False
        entering = True  # the next frame out is the first from an entry point
        while True:
            self.deadline.check()
            try:
                packet = next(packets)
            except (StopIteration, av.FFmpegError):
                return
            if skip:
                codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in self.targets else "NONREF"
            if packet.is_keyframe and damaged:  # after damage, a new entry point must prove itself
                damaged, entering = False, True
            try:
                frames = packet.decode()
            except av.FFmpegError:
                damaged = True
                continue
            for frame in frames:
                if _clean_entry(frame):
                    damaged = False
                elif entering and _predicted(frame):
                    damaged = True  # built on frames before the entry point: not a clean one
                entering = False
                yield frame, damaged or frame.is_corrupt

    def _counted_frames(
        self, frames: Iterator[tuple[av.VideoFrame, bool]]
    ) -> Iterator[tuple[int, av.VideoFrame, bool]]:
        """Frames in display order with their position, for streams whose timestamps cannot be used."""
        for position, (frame, damaged) in enumerate(frames):
            yield self.index.pts[min(position, len(self.index.pts) - 1)], frame, damaged

    def _take_in_order(self, frames: Iterator[tuple[int, av.VideoFrame, bool]]) -> Iterator[tuple[int, av.VideoFrame]]:
        last = self.wanted[-1]
        for pts, frame, damaged in frames:
            if pts in self.targets and not damaged:
                yield pts, frame
            if pts >= last:
                return


class _Frames:
    """A forward-only run of decoded frames that can look one frame ahead."""

    def __init__(self, frames: Iterator[tuple[av.VideoFrame, bool]]) -> None:
        self.frames = frames
        self.ahead: tuple[av.VideoFrame, bool] | None = None
        self.position: int | None = None  # pts of the last frame taken

    def exact(self, target: int) -> av.VideoFrame | None:
        """The frame at ``target``, intact; ``None`` if the decoder skipped it, or it came out damaged."""
        while True:
            item = self.ahead if self.ahead is not None else next(self.frames, None)
            self.ahead = None
            if item is None:
                return None
            frame, damaged = item
            if frame.pts is None or frame.pts < target:
                continue
            if frame.pts > target:
                self.ahead = item  # maybe the next target
                return None
            self.position = frame.pts
            return None if damaged else frame


def _clean_entry(frame: av.VideoFrame) -> bool:
    """Whether the decoder says ``frame`` needs no earlier frame: a keyframe, or an I-frame."""
    return bool(frame.key_frame) or frame.pict_type == av.video.frame.PictureType.I


def _predicted(frame: av.VideoFrame) -> bool:
    """Whether the decoder says ``frame`` is built on other frames (P, B and kin; not unknown)."""
    return not frame.key_frame and frame.pict_type not in (
        av.video.frame.PictureType.NONE,
        av.video.frame.PictureType.I,
    )


def _truncation_warnings(stream: av.VideoStream, index: _FrameIndex, span: float) -> tuple[str, ...]:
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
