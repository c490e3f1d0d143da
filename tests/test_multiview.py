"""Multi-view testing: temporal views and three crops, averaged like X-CLIP's protocol."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest
from helpers import LABELS_SURFING_TEXT, invoke, write_video
from hypothesis import given, settings
from hypothesis import strategies as st

from xclip_cli.errors import ExitCode
from xclip_cli.jobs.classify import classify_videos
from xclip_cli.labels import inline_labelset
from xclip_cli.media.preprocess import preprocess_crops, preprocess_frame
from xclip_cli.media.sampling import plan_segment_centres, plan_views
from xclip_cli.model.backend import softmax
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=3000),
    fps=st.floats(min_value=1.0, max_value=120.0),
    t=st.integers(min_value=1, max_value=32),
    views=st.integers(min_value=1, max_value=8),
)
def test_views_interleave_and_the_first_of_one_is_the_classic_plan(n: int, fps: float, t: int, views: int) -> None:
    times = [i / fps for i in range(n)]
    plans = plan_views(times, t, views)
    assert len(plans) == views and all(len(plan.frame_indices) == t for plan in plans)
    assert plan_views(times, t, 1)[0] == plan_segment_centres(times, t)
    for plan in plans:
        assert all(0 <= i < n for i in plan.frame_indices)
        assert list(plan.frame_indices) == sorted(plan.frame_indices)
    # Point i of view k never comes after point i of view k + 1: the views interleave.
    for earlier, later in itertools.pairwise(plans):
        assert all(a <= b for a, b in zip(earlier.frame_indices, later.frame_indices, strict=True))
    if n >= t * views:  # enough frames: every view and segment gets its own frame
        indices = [i for plan in plans for i in plan.frame_indices]
        assert len(set(indices)) == len(indices)


def test_three_crops_are_the_start_middle_and_end_of_the_long_side(tiny_model_dir: Path) -> None:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    config = runner.preprocess  # tiny checkpoint: short side 30, crop 30x30
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, size=(30, 70, 3), dtype=np.uint8)  # short side already the crop size
    crops = preprocess_crops(wide, config, crops=3)
    assert crops.shape == (3, 3, 30, 30)
    for crop, left in zip(crops, (0, 20, 40), strict=True):
        np.testing.assert_array_equal(crop, preprocess_frame(np.ascontiguousarray(wide[:, left : left + 30]), config))
    tall = rng.integers(0, 256, size=(90, 30, 3), dtype=np.uint8)
    for crop, top in zip(preprocess_crops(tall, config, crops=3), (0, 30, 60), strict=True):
        np.testing.assert_array_equal(crop, preprocess_frame(np.ascontiguousarray(tall[top : top + 30]), config))
    np.testing.assert_array_equal(preprocess_crops(wide, config)[0], preprocess_frame(wide, config))


def test_multi_view_is_the_mean_of_single_views_computed_separately(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    path = write_video(tmp_path / "clip.mp4", num_frames=60, size=(64, 48))
    labelset = inline_labelset(LABELS_SURFING_TEXT)
    options = ClassifyOptions(top_k=4, clips=3, crops=3)
    (result,) = classify_videos(runner, [str(path)], labelset, options)
    assert result.ok and result.views == 9
    # Independently: every frame decoded naively, each (clip, crop) scored on its own.
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    times = [i / 12 for i in range(60)]
    features = runner.label_text_features(labelset)
    singles = []
    for plan in plan_views(times, runner.num_frames, 3):
        per_frame = [preprocess_crops(frames[i], runner.preprocess, crops=3) for i in plan.frame_indices]
        for crop in range(3):
            pixels = np.stack([frame[crop] for frame in per_frame])[None]
            singles.append(softmax(runner.video_logits(pixels, features))[0])
    expected = np.stack(singles).mean(axis=0)
    got = {p.label: p.probability for p in result.predictions}
    for index, label in enumerate(labelset.names):
        assert got[label] == pytest.approx(float(expected[index]), abs=1e-6)
    single = next(iter(classify_videos(runner, [str(path)], labelset, ClassifyOptions(top_k=4))))
    assert single.views == 1 and single.predictions != result.predictions
    assert len(result.timestamps) == 3 * runner.num_frames  # every frame any view saw


def test_cli_reports_the_views_and_refuses_two_crops(tiny_model_dir: Path, clip_dir: Path) -> None:
    video = str(clip_dir / "a.mp4")
    base = ["classify", video, "--model", str(tiny_model_dir), "--labels", LABELS_SURFING_TEXT, "-f", "json"]
    result = invoke([*base, "--clips", "2", "--crops", "3"])
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)[0]["views"] == 6
    refused = invoke([*base, "--crops", "2"])
    assert refused.exit_code == ExitCode.USAGE
    assert "--crops 2" in refused.stderr
