"""``--sampling keyframes`` in the library: real keyframes from the right segments, exact frames
where a segment has none, no added repeats, and the same pixels a full decode gives."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from helpers import decode_all, encode_video, frame_number, frame_pixels, write_video

from xclip_cli.media.decode import sample_video
from xclip_cli.media.sampling import TIME_EPSILON

NO_SCENECUT = {"sc_threshold": "0"}  # keyframes only where the GOP length puts them


def demux(path: Path) -> tuple[list[float], set[int]]:
    """Frame times (seconds from the first, display order) and the display indices of the
    frames the container flags as keyframes: an independent reading of the file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size and p.pts is not None]
        base = stream.time_base
    order = sorted(pts for pts, _ in packets)
    times = [float((pts - order[0]) * base) for pts in order]
    flagged = {order.index(pts) for pts, key in packets if key}
    return times, flagged


def check_keyframe_sampling(path: Path, num_frames: int, clips: int = 1) -> tuple[int, int]:
    """Every property the issue asks of keyframe sampling, on one file; returns (substitutes, fallbacks)."""
    times, keyframes = demux(path)
    exact = sample_video(path, num_frames, views=clips)
    video = sample_video(path, num_frames, views=clips, sampling="keyframes")
    reference = decode_all(path)
    span = exact.info.duration
    step = span / num_frames
    substitutes = fallbacks = 0
    for view, (plan, exact_plan) in enumerate(zip(video.plans, exact.plans, strict=True)):
        for i, (chosen, centre) in enumerate(zip(plan.frame_indices, exact_plan.frame_indices, strict=True)):
            lo = (i + view / clips) * step  # the sample point's part of its segment
            hi = lo + step / clips
            inside = [k for k in keyframes if lo - TIME_EPSILON <= times[k] < hi - TIME_EPSILON]
            if chosen != centre:
                substitutes += 1
                assert chosen in inside, (view, i, chosen, inside)  # a real keyframe of this part
                point = (lo + hi) / 2
                assert abs(times[chosen] - point) == min(abs(times[k] - point) for k in inside)  # the nearest
            elif not inside:
                fallbacks += 1
        assert plan.timestamps == tuple(times[index] for index in plan.frame_indices)
        if len(set(exact_plan.frame_indices)) == num_frames:
            assert len(set(plan.frame_indices)) == num_frames  # keyframes never add repeats
        for index, frame in zip(plan.frame_indices, video.views[view], strict=True):
            assert np.array_equal(frame, reference[index]), index  # bit-identical to a full decode
    assert sum(plan.substitutes for plan in video.plans) == substitutes
    assert video.warnings == exact.warnings
    return substitutes, fallbacks


@pytest.mark.parametrize(
    ("codec", "options"),
    [
        ("libx264", {"g": "12", "bf": "2", "crf": "10", **NO_SCENECUT}),
        ("libx264", {"g": "12", "bf": "3", "crf": "10", "x264-params": "open-gop=1", **NO_SCENECUT}),
        ("libx265", {"x265-params": "keyint=12:min-keyint=12:scenecut=0:log-level=error"}),
        ("mpeg4", {"g": "12", "bf": "2", "qscale": "2"}),
        ("libvpx-vp9", {"g": "12"}),
    ],
    ids=["h264", "h264-open-gop", "hevc", "mpeg4", "vp9"],
)
def test_dense_keyframes_stand_in_everywhere(tmp_path: Path, codec: str, options: dict[str, str]) -> None:
    suffix = ".webm" if codec == "libvpx-vp9" else ".mp4"
    path = write_video(tmp_path / f"clip{suffix}", num_frames=96, codec=codec, options=options)
    substitutes, fallbacks = check_keyframe_sampling(path, 8)
    assert fallbacks == 0 and substitutes >= 4  # a keyframe every second, segments of a second
    video = sample_video(path, 8, sampling="keyframes", transform=frame_number)
    assert set(video.plan.frame_indices) <= demux(path)[1]  # every frame used is a keyframe
    assert list(video.frames) == list(video.plan.frame_indices)  # the frames they claim to be


def test_segments_without_a_keyframe_keep_the_exact_frame(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=96, options={"g": "40", "bf": "2", **NO_SCENECUT})
    substitutes, fallbacks = check_keyframe_sampling(path, 8)
    assert substitutes >= 2 and fallbacks >= 2  # keyframes at 0, 40, 80: both cases occur


def test_fewer_keyframes_than_segments_still_give_distinct_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=96, options={"g": "96", "bf": "2", **NO_SCENECUT})
    video = sample_video(path, 8, sampling="keyframes")
    assert len(set(video.plan.frame_indices)) == 8 and video.plan.substitutes == 1  # only frame 0 is a keyframe
    check_keyframe_sampling(path, 8)


def test_every_view_takes_its_own_keyframes(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=96, options={"g": "6", "bf": "2", **NO_SCENECUT})
    substitutes, _ = check_keyframe_sampling(path, 4, clips=3)
    assert substitutes >= 6
    video = sample_video(path, 4, views=3, sampling="keyframes")
    used = [index for plan in video.plans for index in plan.frame_indices]
    assert len(set(used)) == len(used)  # the views never share a frame


def test_variable_frame_rate_parts_are_cut_by_time(tmp_path: Path) -> None:
    # Bursts and gaps: frame times 0..95 with a stretch at 4x the rate; keyframes every 6 frames.
    pts = [*range(0, 40), *range(40, 60, 4), *range(60, 200, 2)][:96]
    frames = [frame_pixels(index, 64, 48) for index in range(96)]
    path = encode_video(tmp_path / "vfr.mkv", frames, rate=24, pts=pts, options={"g": "6", "bf": "0", **NO_SCENECUT})
    substitutes, fallbacks = check_keyframe_sampling(path, 8)
    assert substitutes >= 4 and fallbacks == 0


def test_a_range_samples_keyframes_inside_it(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", num_frames=96, options={"g": "8", "bf": "2", **NO_SCENECUT})
    video = sample_video(path, 4, start=2.0, end=6.0, sampling="keyframes")  # exact: frames 30, 42, 54, 66
    assert video.plan.frame_indices == (32, 40, 56, 64)  # the keyframe nearest each centre, inside the range
    assert video.plan.substitutes == 4


def test_intra_only_video_keeps_the_exact_frames(tmp_path: Path) -> None:
    # Every frame is a keyframe: the exact frames cost nothing, so nothing is substituted.
    frames = [frame_pixels(index, 64, 48) for index in range(24)]
    path = encode_video(tmp_path / "mjpeg.avi", frames, codec="mjpeg", pix_fmt="yuvj420p")
    exact, keyed = sample_video(path, 8), sample_video(path, 8, sampling="keyframes")
    assert keyed.plan == exact.plan and keyed.plan.substitutes == 0


@pytest.mark.parametrize("name", ["restart.ts", "raw.h264"])
def test_streams_decoded_front_to_back_get_exact_frames(tmp_path: Path, name: str) -> None:
    # Restarting or missing timestamps: frames are counted from the start, a keyframe saves nothing.
    if name == "raw.h264":
        path = encode_video(tmp_path / name, [frame_pixels(i, 64, 48) for i in range(24)], fmt="h264")
    else:
        first, second = tmp_path / "1.ts", tmp_path / "2.ts"
        encode_video(first, [frame_pixels(i, 64, 48) for i in range(24)], options={"g": "6", "bf": "0"})
        encode_video(second, [frame_pixels(24 + i, 64, 48) for i in range(24)], options={"g": "6", "bf": "0"})
        path = tmp_path / name
        path.write_bytes(first.read_bytes() + second.read_bytes())
    exact, keyed = sample_video(path, 8), sample_video(path, 8, sampling="keyframes")
    assert keyed.plan == exact.plan and keyed.plan.substitutes == 0
    assert all(np.array_equal(a, b) for a, b in zip(keyed.frames, exact.frames, strict=True))


def test_an_unknown_sampling_is_refused() -> None:
    with pytest.raises(ValueError, match="sampling 'nearest'"):
        sample_video("any.mp4", 8, sampling="nearest")


def test_keyframes_decoded_alone_mix_with_exact_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Keyframes 12 and 36 are decoded from their packet alone (no later wanted frame builds on
    # them); 30 and 50 then need seeks and chains. All four equal a full decode.
    from xclip_cli.media import decode, seeking

    path = write_video(tmp_path / "clip.mp4", num_frames=60, options={"g": "12", "bf": "2", **NO_SCENECUT})
    alone: list[int] = []
    original = seeking.SeekingDecoder._keyframe_alone

    def counted(self: seeking.SeekingDecoder, target: int) -> av.VideoFrame | None:
        frame = original(self, target)
        alone.append(frame is not None)
        return frame

    monkeypatch.setattr(seeking.SeekingDecoder, "_keyframe_alone", counted)
    reference = decode_all(path)
    with decode.VideoReader(path) as reader:
        assert {12, 36} <= set(reader.keyframes) and not {30, 50} & set(reader.keyframes)
        frames = dict(reader.decode([12, 30, 36, 50], lambda rgb: rgb))
    assert alone == [True, True]  # the fast path ran, and gave the frames
    assert sorted(frames) == [12, 30, 36, 50]
    assert all(np.array_equal(frames[index], reference[index]) for index in frames)
