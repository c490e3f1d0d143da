"""The seek planner: which packets to decode for the planned frames, and from where.

``SeekingDecoder`` decodes the frames whose presentation timestamps are wanted, seeking to the
keyframe before a target only when that skips work and decoding forward from there; frames that
nothing references are skipped by the decoder. A seek that lands late, or on a keyframe that is
no clean entry point (its first frame comes out predicted), is retried from an earlier keyframe,
then from the start. ``decode.VideoReader`` reads the packets' timestamps first (``FrameIndex``)
and hands them here. A keyframe alone (``--sampling keyframes``) is decoded from its one packet
and the decoder drained.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av

from xclip_cli.errors import VideoError

# PyAV's default: slice threads. Frame threads ("AUTO") measured no faster on one-slice
# 720p H.264 and 2x slower on multi-slice files (benchmarks/bench_classify.py).
THREAD_TYPE = "SLICE"
SEEK_ATTEMPTS = 3  # keyframes tried, going back, before decoding from the start


@dataclass(frozen=True)
class FrameIndex:
    pts: list[int]  # presentation timestamps in display order, in stream time base (made monotonic)
    keyframe_pts: list[int]  # sorted
    time_base: Fraction
    sequential: bool  # timestamps missing or restarting: decode from the start, count frames
    read_error: bool  # demuxing stopped at damaged or missing data
    flagged: bool = True  # the demuxer marked keyframes (else keyframe_pts is a guess: the first frame)


class Deadline:
    """A per-file time limit, checked between packets (``None``: no limit).

    ``clock`` gives seconds (``time.monotonic``); tests pass their own to move time by hand.
    """

    def __init__(self, name: str, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.seconds = seconds
        self.clock = clock
        self.at = None if seconds is None else clock() + seconds

    def check(self) -> None:
        if self.at is not None and self.clock() > self.at:
            raise VideoError(self.name, f"gave up after {self.seconds:g} s (--timeout)")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent here (the caller busy with a frame, e.g. running the model) does not count."""
        started = self.clock()
        try:
            yield
        finally:
            if self.at is not None:
                self.at += self.clock() - started


class SeekingDecoder:
    """Decodes the frames whose (unwrapped) pts are in ``wanted``, seeking only when it skips work."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        index: FrameIndex,
        wanted: list[int],
        deadline: Deadline,
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
