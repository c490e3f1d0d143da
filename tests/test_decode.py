"""Decoding exactly the planned frames, upright, from any container the tests can write."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from helpers import VIDEOS, decode_all, encode_video, frame_number, frame_pixels, write_video

from xclip_cli.errors import VideoError
from xclip_cli.media.decode import sample_video


@pytest.mark.parametrize("gop", [1, 5, 250])
def test_sampled_frames_are_the_planned_ones(tmp_path: Path, gop: int) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=60, gop=gop)
    sampled = sample_video(path, 8)
    assert sampled.plan.frame_indices == tuple(int((i + 0.5) * 60 / 8) for i in range(8))
    reference = decode_all(path)
    for index, frame in zip(sampled.plan.frame_indices, sampled.frames, strict=True):
        assert np.array_equal(frame, reference[index])  # bit-identical to a full decode
        assert frame_number(frame) == index
    assert sampled.info.num_frames == 60
    assert sampled.info.duration == pytest.approx(60 / 12)
    assert (sampled.info.width, sampled.info.height) == (64, 48)


def test_timestamps_in_seconds(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=48, rate=24)
    sampled = sample_video(path, 4)
    assert sampled.plan.timestamps == pytest.approx([i / 24 for i in (6, 18, 30, 42)])


def test_start_end(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=120, rate=12)  # 10 s
    sampled = sample_video(path, 4, start=5.0, end=9.0)
    assert [frame_number(f) for f in sampled.frames] == [66, 78, 90, 102]
    with pytest.raises(VideoError, match="not before the end"):
        sample_video(path, 4, start=10.0)


def test_short_video_repeats_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "short.mp4", num_frames=3)
    sampled = sample_video(path, 8)
    assert len(sampled.frames) == 8
    assert [frame_number(f) for f in sampled.frames] == [0, 0, 0, 1, 1, 2, 2, 2]


def test_stream_starting_late_and_variable_rate(tmp_path: Path) -> None:
    # Timestamps start at 10 s and the gaps vary: times are taken from pts, relative to the
    # first frame, never from a frame rate.
    path = tmp_path / "vfr.mkv"
    gaps = [1, 1, 1, 4, 4, 1, 1, 8, 2, 2, 2, 2]  # in 1/20 s
    pts = [200 + int(sum(gaps[:index])) for index in range(len(gaps))]
    encode_video(path, [frame_pixels(index, 64, 48) for index in range(len(gaps))], rate=20, pts=pts)
    sampled = sample_video(path, 4)
    times = np.cumsum([0, *gaps[:-1]]) / 20
    assert sampled.plan.timestamps == pytest.approx([times[i] for i in sampled.plan.frame_indices])
    assert [frame_number(f) for f in sampled.frames] == list(sampled.plan.frame_indices)
    # Frames at 0, 1, 2, 3, 7, 11, 12, 13, 21, 23, 25, 27 (1/20 s); the last lasts the
    # median step (2), so the span is 29/20 s and the centres fall at 3.6, 10.9, 18.1 and
    # 25.4 (1/20 s): frames 3, 4, 7 and 10.
    assert sampled.plan.frame_indices == (3, 4, 7, 10)


def test_rotated_phone_clip_is_upright() -> None:
    # pens.mp4 is coded 176x144 with a -90 degree display matrix: shown 144 wide, 176 tall.
    sampled = sample_video(VIDEOS / "pens.mp4", 8)
    assert sampled.info.rotation == 270
    assert (sampled.info.width, sampled.info.height) == (144, 176)
    assert sampled.frames[0].shape == (176, 144, 3)
    with av.open(str(VIDEOS / "pens.mp4")) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # Turned clockwise: the coded frame's first column (bottom to top) is the first row.
    upright = sample_video(VIDEOS / "pens.mp4", 1, end=0.001).frames[0]
    assert np.array_equal(upright, np.rot90(first, k=-1))


@pytest.mark.parametrize(
    ("name", "frames", "size"), [("bikes.mp4", 250, (640, 272)), ("techslides_lego.webm", 166, (560, 320))]
)
def test_real_clips(name: str, frames: int, size: tuple[int, int]) -> None:
    sampled = sample_video(VIDEOS / name, 8)
    assert sampled.info.num_frames == frames
    assert (sampled.info.width, sampled.info.height) == size
    reference = decode_all(VIDEOS / name)
    for index, frame in zip(sampled.plan.frame_indices, sampled.frames, strict=True):
        assert np.array_equal(frame, reference[index])


def test_transform_is_applied_to_each_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=16)
    sampled = sample_video(path, 4, transform=lambda rgb: rgb.shape)
    assert sampled.frames == ((48, 64, 3),) * 4


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="no such file"):
        sample_video(tmp_path / "nope.mp4", 8)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(VideoError, match="no video stream"):
        sample_video(path, 8)


def remux(source: Path, target: Path, container_format: str) -> Path:
    """Copy the packets into another container (no re-encoding)."""
    with av.open(str(source)) as src, av.open(str(target), "w", format=container_format) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


@pytest.mark.parametrize("frames", [8, 32])
@pytest.mark.parametrize("kind", ["mpegts", "avi"])
def test_containers_whose_seeks_land_late_still_give_exact_frames(tmp_path: Path, kind: str, frames: int) -> None:
    # MPEG-TS seeks land on the keyframe after the one asked for (or at the end); these
    # must be detected and answered with an earlier keyframe or a decode from the start.
    if kind == "mpegts":
        path = remux(write_video(tmp_path / "clip.mp4", num_frames=120, gop=10), tmp_path / "clip.ts", "mpegts")
    else:
        # MPEG-4 Part 2 with B-frames in AVI: keyframe flags that are not all clean entry points.
        options = {"bf": "2", "g": "10"}
        path = write_video(tmp_path / "clip.avi", num_frames=120, codec="mpeg4", rate=25, options=options)
    sampled = sample_video(path, frames)
    reference = decode_all(path)
    assert sampled.info.num_frames == len(reference) == 120
    for index, frame in zip(sampled.plan.frame_indices, sampled.frames, strict=True):
        assert np.array_equal(frame, reference[index]), index
