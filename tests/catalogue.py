"""A catalogue of hostile inputs, each written into a folder with PyAV (no ffmpeg binary needed).

Every case names the file it builds and the exact outcome expected from the library
(``sample_video``) and the CLI: a result (``ok``, optionally with a warning) or an error whose
one-line reason contains ``reason``. The README's troubleshooting table lists the same cases.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from helpers import encode_video, frame_pixels, write_video

SIZE = (64, 48)


@dataclass(frozen=True)
class Case:
    name: str  # the file (or folder) built, also the test id
    build: Callable[[Path], None]  # writes the case at the given path
    reason: str = ""  # for errors: a part of the one-line reason; "" = the file classifies
    warning: str = ""  # for results: a part of the warning that must come with them
    frames_checked: bool = False  # frame numbers are encoded, so exact frames can be asserted

    @property
    def ok(self) -> bool:
        return not self.reason


def _bytes(content: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(content)


def _numbered(count: int, size: tuple[int, int] = SIZE, pattern: str = "moving") -> list[np.ndarray]:
    return [frame_pixels(index, *size, pattern=pattern) for index in range(count)]


def _flat(colour: tuple[int, int, int], count: int = 6, size: tuple[int, int] = SIZE) -> list[np.ndarray]:
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    image[...] = colour
    return [image] * count


def _audio(path: Path, fmt: str | None = None, cover: bool = False) -> None:
    """A second of a sine tone; with ``cover``, plus an attached cover picture (album art)."""
    with av.open(str(path), mode="w", format=fmt) as container:
        if cover:
            picture = container.add_stream("mjpeg")
            picture.width, picture.height, picture.pix_fmt = 64, 64, "yuvj420p"
            picture.disposition = av.stream.Disposition.attached_pic
        audio = container.add_stream("aac", rate=22050)
        if cover:
            image = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, dtype=np.uint8), format="rgb24")
            for packet in picture.encode(image):
                container.mux(packet)
            for packet in picture.encode():
                container.mux(packet)
        samples = (np.sin(np.arange(22050) * 440 * 2 * np.pi / 22050) * 0.3).astype(np.float32)
        for start in range(0, 22050, 1024):
            chunk = samples[start : start + 1024].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate = 22050
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def _truncated(path: Path, faststart: bool) -> None:
    """A 48-frame clip cut to 55% of its size: with the index at the front, or at the end (lost)."""
    options = {"movflags": "faststart"} if faststart else None
    encode_video(path, _numbered(48), options={"g": "6", "crf": "10"}, container_options=options)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.55)])


def _corrupt_middle(path: Path) -> None:
    """Random bytes over the middle tenth of the file: a damaged download, index intact."""
    encode_video(path, _numbered(48), options={"g": "6", "crf": "10"}, container_options={"movflags": "faststart"})
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    span = len(data) // 10
    data[middle : middle + span] = np.random.default_rng(0).integers(0, 256, span, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


def _unknown_codec(path: Path) -> None:
    """An AVI whose video fourcc no decoder knows (as from an exotic capture card)."""
    encode_video(path, _numbered(6), codec="mjpeg", pix_fmt="yuvj420p")
    path.write_bytes(path.read_bytes().replace(b"MJPG", b"XQZ9"))


def _timestamps_restart(path: Path) -> None:
    """Two MPEG-TS recordings concatenated byte for byte: timestamps jump back to the start."""
    first, second = path.with_suffix(".1.ts"), path.with_suffix(".2.ts")
    encode_video(first, _numbered(24), options={"g": "6", "bf": "0"})
    encode_video(second, [frame_pixels(24 + i, *SIZE) for i in range(24)], options={"g": "6", "bf": "0"})
    path.write_bytes(first.read_bytes() + second.read_bytes())
    first.unlink()
    second.unlink()


def _fake_keyframes(path: Path) -> None:
    """Every fourth P-frame flagged as a keyframe in the container: seek points that are not
    clean entry points (as some broken muxers write), so decoding from them gives garbage.

    MPEG-4 Part 2 in MP4: the muxer keeps its false flags (H.264's come out cleared, honest).
    """

    source = path.with_suffix(".src.mkv")
    # A panning texture, so P-frames really depend on earlier frames (flat pictures that change
    # colour every frame come out intra-coded, and would decode anywhere).
    texture = np.random.default_rng(0).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    frames = []
    for index in range(60):
        image = np.roll(texture, index, axis=1)
        image[:16, :16] = (index % 25) * 10
        frames.append(image)
    encode_video(source, frames, codec="mpeg4", options={"g": "60", "bf": "0", "qscale": "2"})
    with av.open(str(source)) as src, av.open(str(path), mode="w") as dst:
        stream_in = src.streams.video[0]
        stream_out = dst.add_stream_from_template(stream_in)
        for index, packet in enumerate(src.demux(stream_in)):
            if packet.size == 0:
                continue
            if index % 4 == 0:
                packet.is_keyframe = True
            packet.stream = stream_out
            dst.mux(packet)
    source.unlink()


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _still(path: Path, fmt: str, codec: str, pix_fmt: str) -> None:
    encode_video(path, _numbered(1), codec=codec, pix_fmt=pix_fmt, fmt=fmt)


HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>Not Found</body></html>\n"

CASES: tuple[Case, ...] = (
    # Not a video at all.
    Case("empty.mp4", _bytes(b""), reason="empty file"),
    Case("notes.mp4", _bytes(b"meeting notes\n" * 50), reason="a text file, not a video"),
    Case("error-page.mp4", _bytes(HTML), reason="an HTML page, not a video"),
    Case("noise.mp4", _bytes(np.random.default_rng(1).bytes(40_000)), reason="not a video file"),
    Case("zeros.mp4", _bytes(bytes(40_000)), reason="not a video file"),
    Case("folder.mp4", lambda path: path.mkdir(), reason="a folder, not a file"),
    Case("pipe.mp4", _fifo, reason="not a regular file"),
    Case("song.m4a", _audio, reason="no video stream"),
    Case("podcast-cover-only.mp4", lambda path: _audio(path, fmt="mp4", cover=True), reason="only a cover picture"),
    Case("photo.png", lambda path: _still(path, "image2", "png", "rgb24"), reason="a still image"),
    Case("photo.jpg", lambda path: _still(path, "image2", "mjpeg", "yuvj420p"), reason="a still image"),
    Case(
        "still.gif", lambda path: encode_video(path, _numbered(1), codec="gif", pix_fmt="rgb8"), reason="a still image"
    ),
    Case("capture-card.avi", _unknown_codec, reason="no decoder"),
    # Damaged.
    Case("cut-off.mp4", lambda path: _truncated(path, faststart=False), reason="truncated"),
    Case("cut-off-faststart.mp4", lambda path: _truncated(path, faststart=True), warning="truncated"),
    Case("damaged-middle.mp4", _corrupt_middle, warning="could not be decoded"),
    # Timing.
    Case(
        "starts-at-10s.mp4",
        lambda path: encode_video(path, _numbered(24), pts=[120 + i for i in range(24)]),
        frames_checked=True,
    ),
    Case(
        "variable-rate.mkv",
        lambda path: encode_video(path, _numbered(12), pts=[0, 1, 2, 3, 7, 11, 12, 13, 21, 23, 25, 27], rate=20),
        frames_checked=True,
    ),
    Case("restarting-timestamps.ts", _timestamps_restart, frames_checked=True),
    Case("raw-stream.h264", lambda path: encode_video(path, _numbered(24), fmt="h264"), frames_checked=True),
    Case("fake-keyframes.mp4", _fake_keyframes, frames_checked=True),
    # Pictures.
    Case("phone-rotated.mp4", lambda path: encode_video(path, _numbered(12), rotation=90)),
    Case("ten-bit.mp4", lambda path: encode_video(path, _flat((200, 40, 90)), pix_fmt="yuv420p10le")),
    Case("four-four-four.mp4", lambda path: encode_video(path, _flat((200, 40, 90)), pix_fmt="yuv444p")),
    Case("full-range.mp4", lambda path: encode_video(path, _flat((200, 40, 90)), pix_fmt="yuvj420p")),
    Case("uhd-4k.mp4", lambda path: encode_video(path, _numbered(3, size=(3840, 2160), pattern="flat"))),
    Case("tiny-32x24.mp4", lambda path: encode_video(path, _numbered(12, size=(32, 24)))),
    Case("animated.gif", lambda path: encode_video(path, _numbered(6), codec="gif", pix_fmt="rgb8")),
    Case("one-frame.mp4", lambda path: encode_video(path, _numbered(1))),
    # Other codecs and containers.
    Case("vp9.webm", lambda path: encode_video(path, _numbered(12), codec="libvpx-vp9"), frames_checked=True),
    Case("mpeg4.avi", lambda path: encode_video(path, _numbered(12), codec="mpeg4"), frames_checked=True),
    Case("prores.mov", lambda path: encode_video(path, _numbered(6), codec="prores", pix_fmt="yuv422p10le")),
    Case("lossless.mkv", lambda path: encode_video(path, _numbered(12), codec="ffv1", pix_fmt="yuv444p")),
    Case("motion-jpeg.avi", lambda path: encode_video(path, _numbered(6), codec="mjpeg", pix_fmt="yuvj420p")),
    # Decoders that never say whether a picture is a keyframe: the container's flags are trusted.
    Case(
        "qtrle.mov", lambda path: encode_video(path, _numbered(24), codec="qtrle", pix_fmt="rgb24"), frames_checked=True
    ),
    Case(
        "cinepak.mov",
        lambda path: encode_video(path, _numbered(24), codec="cinepak", pix_fmt="rgb24"),
        frames_checked=True,
    ),
    Case(
        "msvideo1.avi",
        lambda path: encode_video(path, _numbered(24), codec="msvideo1", pix_fmt="rgb555le"),
        frames_checked=True,
    ),
    Case("standard.mp4", lambda path: write_video(path), frames_checked=True),
)


def build_all(folder: Path) -> dict[str, Path]:
    """Write every case into ``folder``; returns name -> path."""
    paths = {}
    for case in CASES:
        path = folder / case.name
        case.build(path)
        paths[case.name] = path
    return paths
