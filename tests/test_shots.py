"""`xclip timeline --shots`: windows that follow the video's shots (PySceneDetect's detector)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import srt
from helpers import LABELS_TEXT, encode_video, invoke

from xclip_cli.errors import ExitCode, MissingDependency, UsageError
from xclip_cli.media.decode import VideoReader
from xclip_cli.media.shots import detect_cuts, require_scenedetect, shot_windows

RATE = 12
CUTS = (20, 45, 60, 100)  # frames where a new shot starts; 120 frames in all


def shot_frames(seed: int = 0) -> list[np.ndarray]:
    """120 frames: shots of different panning textures, cut hard at ``CUTS``."""
    rng = np.random.default_rng(seed)
    frames = []
    for start, end in itertools.pairwise([0, *CUTS, 120]):
        pattern = np.repeat(np.repeat(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
        frames += [np.roll(pattern, index, axis=1) for index in range(start, end)]  # a slow pan within a shot
    return frames


def hard_cuts(path: Path) -> Path:
    return encode_video(path, shot_frames(), rate=RATE)


@pytest.fixture(scope="module")
def shots_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hard_cuts(tmp_path_factory.mktemp("shots") / "cuts.mp4")


def test_cuts_are_found_within_one_frame(shots_clip: Path) -> None:
    with VideoReader(shots_clip) as reader:
        cuts = detect_cuts(str(shots_clip), reader.times)
    assert len(cuts) == len(CUTS)
    for found, frame in zip(cuts, CUTS, strict=True):
        assert abs(found - frame / RATE) <= 1 / RATE + 1e-9


def test_shot_windows_tile_the_video_and_split_long_shots() -> None:
    extents = shot_windows([2.0, 3.0, 9.5], 12.0, window=4.0)  # the 6.5 s shot: two windows of 3.25 s
    assert [x for extent in extents for x in extent] == pytest.approx([0, 2, 2, 3, 3, 6.25, 6.25, 9.5, 9.5, 12])
    assert shot_windows([], 3.0, window=8.0) == [(0.0, 3.0)]
    assert shot_windows([0.0, 5.0, 5.0, 7.0], 6.0, window=8.0) == [(0.0, 5.0), (5.0, 6.0)]  # cuts at or past the ends


@pytest.mark.heavy
def test_the_cli_follows_the_shots_in_every_format(tiny_model_dir: Path, shots_clip: Path) -> None:
    args = ["timeline", str(shots_clip), "-m", str(tiny_model_dir), "-l", LABELS_TEXT, "--shots", "--window", "3"]
    result = invoke([*args, "--no-merge", "-f", "json"])
    assert result.exit_code == ExitCode.OK, result.stderr
    document = json.loads(result.stdout)
    starts = [segment["start"] for segment in document["segments"]]
    # Shots of 20, 25, 15, 40 and 20 frames at 12 fps; the 40-frame shot (3.33 s) is split in two.
    cut_times = [frame / RATE for frame in CUTS]
    assert document["shots"] == pytest.approx(cut_times, abs=1 / RATE + 1e-3)
    expected = [0.0, cut_times[0], cut_times[1], cut_times[2], (cut_times[2] + cut_times[3]) / 2, cut_times[3]]
    assert starts == pytest.approx(expected, abs=1 / RATE + 1e-3)
    assert document["segments"][-1]["end"] == pytest.approx(10.0)
    for fmt in ("table", "csv", "jsonl", "srt", "vtt", "chapters"):
        again = invoke([*args, "-f", fmt])
        assert again.exit_code == ExitCode.OK, (fmt, again.stderr)
    cues = list(srt.parse(invoke([*args, "--no-merge", "-f", "srt"]).stdout))
    assert [cue.start.total_seconds() for cue in cues] == pytest.approx(starts, abs=1e-3)


def test_stride_with_shots_is_refused(tiny_model_dir: Path, shots_clip: Path) -> None:
    args = ["timeline", str(shots_clip), "-m", str(tiny_model_dir), "--shots", "--stride", "1"]
    result = invoke(args)
    assert result.exit_code == ExitCode.USAGE and "--stride has no meaning with --shots" in result.stderr


def test_without_pyscenedetect_shots_say_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scenedetect", None)  # what an install without the extra sees
    with pytest.raises(MissingDependency, match=r"pip install 'xclip-cli\[shots\]'"):
        require_scenedetect()


def test_cuts_land_on_frame_times_in_variable_rate_video_that_starts_late(tmp_path: Path) -> None:
    # Timestamps from 3 s on, in bursts and gaps: PySceneDetect's own clock (a constant rate from
    # the stream's start) would put the cuts elsewhere; they must be this tool's frame times.
    frames = shot_frames(seed=1)
    steps = [1 if index % 10 < 5 else 3 for index in range(120)]  # 1/24 s and 3/24 s apart
    pts = list(itertools.accumulate(steps, initial=72))[:120]  # the first frame at 3 s
    path = encode_video(tmp_path / "vfr.mkv", frames, rate=24, pts=pts)
    with VideoReader(path) as reader:
        times = reader.times
        cuts = detect_cuts(str(path), times)
    assert times[0] == 0 and len(cuts) == len(CUTS)
    for found, frame in zip(cuts, CUTS, strict=True):
        assert found in times  # a real frame's time
        assert abs(times.index(found) - frame) <= 1


def test_timeout_with_shots_is_refused() -> None:
    from xclip_cli.options import TimelineOptions

    with pytest.raises(UsageError, match="--timeout cannot bound --shots"):
        TimelineOptions(shots=True, timeout=10)


def test_a_video_without_cuts_says_so(tiny_model_dir: Path, tmp_path: Path) -> None:
    frames = shot_frames()[: CUTS[0]]  # the first shot only
    video = encode_video(tmp_path / "one-shot.mp4", frames, rate=RATE)
    result = invoke(["timeline", str(video), "-m", str(tiny_model_dir), "-l", LABELS_TEXT, "--shots", "--window", "1"])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "--shots found no cut: one shot, split into windows of at most 1 s" in result.stderr
