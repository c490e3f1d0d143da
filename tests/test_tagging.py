"""Tagging (--multi-label): each label's own score, against background prompts, and its tags."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LABELS, invoke, random_pixels, reference_logits, write_video

from xclip_cli.errors import ExitCode, LabelSetError
from xclip_cli.jobs.classify import classify_videos, scoring_text_features
from xclip_cli.jobs.tagging import DEFAULT_BACKGROUND, DEFAULT_THRESHOLD, tag_scores, tags_of
from xclip_cli.labels import inline_labelset, parse_labelset
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions


@pytest.fixture(scope="module")
def runner(tiny_model_dir: Path) -> XClipRunner:
    return XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")


def scores(
    runner: XClipRunner, labels: list[str], pixels: np.ndarray, background: list[str] | None = None
) -> np.ndarray:
    data: dict[str, object] = {"labels": labels}
    if background:
        data["background"] = background
    labelset = parse_labelset(data, origin="test")
    logits = runner.video_logits(pixels, scoring_text_features(runner, labelset, multi_label=True))
    return tag_scores(logits, len(labels))


def test_a_score_equals_transformers_two_way_comparison(runner: XClipRunner, tiny_model_dir: Path) -> None:
    pixels = random_pixels(2, runner, seed=5)
    ours = scores(runner, LABELS, pixels)
    for index, label in enumerate(LABELS):
        # transformers' XCLIPModel on the label and the background prompts alone, softmaxed.
        logits = reference_logits(tiny_model_dir, [label, *DEFAULT_BACKGROUND], pixels)
        expected = torch.softmax(torch.from_numpy(logits).double(), dim=-1)[:, 0].numpy()
        np.testing.assert_allclose(ours[:, index], expected, atol=1e-5)


def test_a_score_does_not_depend_on_the_other_labels(runner: XClipRunner) -> None:
    pixels = random_pixels(1, runner, seed=6)
    among = scores(runner, LABELS, pixels)[0, LABELS.index("dancing")]
    # Other labels in the same places: bit for bit the same score.
    others = ["cooking", "dancing", "rowing", "singing in a choir", "fencing"]
    assert scores(runner, others, pixels)[0, 1] == among
    # Fewer or more labels: the same up to float32 rounding in the head, whose matrix products
    # are blocked by how many texts there are (measured up to 1.6e-6; the logits differ ~1e-5).
    alone = scores(runner, ["dancing"], pixels)[0, 0]
    reordered = scores(runner, [*reversed(LABELS), "juggling", "knitting"], pixels)[0, len(LABELS) - 2]
    assert abs(alone - among) < 5e-6 and abs(reordered - among) < 5e-6


def test_the_background_is_the_label_sets_own_when_it_gives_one(runner: XClipRunner) -> None:
    pixels = random_pixels(1, runner, seed=7)
    default = scores(runner, ["dancing"], pixels)
    own = scores(runner, ["dancing"], pixels, background=["a video of a cat", "a video of a car"])
    assert abs(float(default[0, 0]) - float(own[0, 0])) > 1e-4  # the comparison really changed


def test_tags_are_the_labels_at_or_above_their_thresholds() -> None:
    labelset = parse_labelset(
        {"labels": ["a", {"name": "b", "threshold": 0.8}, {"name": "c", "threshold": 0.1}, "d"]}, origin="t"
    )
    tags = tags_of(np.array([0.6, 0.7, 0.1, 0.2]), labelset)
    assert [(tag.label, tag.threshold) for tag in tags] == [("a", DEFAULT_THRESHOLD), ("c", 0.1)]
    assert tags_of(np.array([0.1, 0.1, 0.05, 0.1]), labelset) == ()  # none apply: no tags at all


def test_scores_are_stable_for_large_logits() -> None:
    logits = np.array([[900.0, -900.0, 899.0, 0.0]])  # labels 900 and -900; background 899 and 0
    got = tag_scores(logits, 2)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got[0], [1 / (1 + np.exp(-1)), 0.0], atol=1e-12)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"labels": [{"name": "a", "threshold": 1.5}]}, "labels[0].threshold: expected a number from 0 to 1"),
        ({"labels": [{"name": "a", "threshold": True}]}, "labels[0].threshold: expected a number from 0 to 1"),
        ({"labels": [{"name": "a", "threshold": "high"}]}, "labels[0].threshold: expected a number from 0 to 1"),
        ({"labels": ["a"], "background": []}, "background: expected a non-empty list of strings"),
        ({"labels": ["a"], "background": ["ok", 3]}, "background[1]: expected a string"),
    ],
)
def test_tagging_settings_in_yaml_are_validated(data: dict[str, object], message: str) -> None:
    with pytest.raises(LabelSetError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_labelset(data, origin="my.yaml")


def test_tagging_settings_have_their_own_digest() -> None:
    from xclip_cli.jobs.tagging import tags_digest

    plain = parse_labelset({"labels": ["a", "b"]}, origin="t")
    limited = parse_labelset({"labels": [{"name": "a", "threshold": 0.3}, "b"]}, origin="t")
    own = parse_labelset({"labels": ["a", "b"], "background": ["x"]}, origin="t")
    assert plain.digest == limited.digest == own.digest == inline_labelset("a, b").digest  # the prompts
    assert len({tags_digest(plain), tags_digest(limited), tags_digest(own)}) == 3  # what tagging uses


def low_thresholds(tmp_path: Path, threshold: float = 1e-4) -> Path:
    """A label set whose thresholds the tiny random model's scores (4e-4 to 0.06 on write_video's
    clip: the background prompts mostly win) pass: real tags."""
    path = tmp_path / f"tags-{threshold}.yaml"
    path.write_text("labels:\n" + "".join(f"  - {{name: {label}, threshold: {threshold}}}\n" for label in LABELS))
    return path


@pytest.mark.heavy
def test_multi_label_through_the_library_and_every_format(
    runner: XClipRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from xclip_cli.labels import load_labelset_file

    video = write_video(tmp_path / "clip.mp4", num_frames=24)
    labelset = load_labelset_file(low_thresholds(tmp_path))
    (result,) = classify_videos(runner, [str(video)], labelset, ClassifyOptions(multi_label=True))
    (plain,) = classify_videos(runner, [str(video)], labelset, ClassifyOptions())
    assert plain.tags is None and result.tags is not None and len(result.tags) == len(LABELS)
    assert [tag.score for tag in result.tags] == sorted(result.label_scores or (), reverse=True)
    # The softmax over the label set is untouched (up to float32 rounding of a larger batch).
    assert [p.label for p in result.predictions] == [p.label for p in plain.predictions]
    got, expected = ([p.probability for p in r.predictions] for r in (result, plain))
    np.testing.assert_allclose(got, expected, atol=1e-6)
    args = ["classify", str(video), "-m", str(tiny_model_dir), "-l", str(low_thresholds(tmp_path)), "--multi-label"]
    record = json.loads(invoke([*args, "-f", "jsonl"]).stdout)
    assert [tag["label"] for tag in record["tags"]] == [tag.label for tag in result.tags]
    np.testing.assert_allclose([tag["score"] for tag in record["tags"]], [t.score for t in result.tags], atol=1e-6)
    assert record["tags_digest"]
    row = next(csv.DictReader(io.StringIO(invoke([*args, "-f", "csv"]).stdout)))
    assert [label for label, _ in json.loads(row["tags"])] == [tag.label for tag in result.tags]
    table = invoke([*args, "--backend", "torch"]).stdout
    assert "tags (--multi-label): " + result.tags[0].label in table
    plain_row = next(csv.DictReader(io.StringIO(invoke([*args[:-1], "-f", "csv"]).stdout)))
    assert plain_row["tags"] == "" and plain_row["tags_digest"] == ""  # not asked: empty, not "no tags"


def test_a_scan_resume_keeps_to_one_tagging(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", num_frames=12)
    out, other = tmp_path / "results.csv", tmp_path / "other.csv"
    base = ["scan", str(folder), "-m", str(tiny_model_dir), "-l", "cooking, dancing", "-q"]
    assert invoke([*base, "-o", str(out)]).exit_code == ExitCode.OK
    assert invoke([*base, "-o", str(other), "--multi-label"]).exit_code == ExitCode.OK
    write_video(folder / "b.mp4", num_frames=12)
    tagged = invoke([*base, "-o", str(out), "--multi-label"])
    assert (
        tagged.exit_code == ExitCode.USAGE
        and "made with no --multi-label, this run uses --multi-label" in tagged.stderr
    )
    untagged = invoke([*base, "-o", str(other)])
    assert (
        untagged.exit_code == ExitCode.USAGE
        and "made with --multi-label, this run uses no --multi-label" in untagged.stderr
    )
    # The same labels with other thresholds tag otherwise: refused too, naming what differs.
    limits = tmp_path / "limits.yaml"
    limits.write_text("name: inline\nlabels:\n  - {name: cooking, threshold: 0.2}\n  - dancing\n")
    moved = invoke(
        ["scan", str(folder), "-m", str(tiny_model_dir), "-l", str(limits), "-q", "-o", str(other), "--multi-label"]
    )
    assert moved.exit_code == ExitCode.USAGE and "other tagging thresholds or background prompts" in moved.stderr
    assert invoke([*base, "-o", str(other), "--multi-label"]).exit_code == ExitCode.OK  # as before: resumes


def test_timeline_windows_are_tagged_like_classify_of_that_stretch(runner: XClipRunner, tmp_path: Path) -> None:
    from xclip_cli.jobs.timeline import build_timeline
    from xclip_cli.options import TimelineOptions

    video = write_video(tmp_path / "clip.mp4", num_frames=48)
    labelset = parse_labelset({"labels": LABELS[:3], "background": ["a video"]}, origin="t")
    timeline = build_timeline(runner, str(video), labelset, TimelineOptions(window=2, stride=2, multi_label=True))
    for window in timeline.windows:
        options = ClassifyOptions(start=window.start, end=window.end, multi_label=True)
        (alone,) = classify_videos(runner, [str(video)], labelset, options)
        np.testing.assert_allclose(window.tag_scores, alone.label_scores, atol=1e-5)
    for segment in timeline.segments(merge=False):
        assert segment.tags is not None and all(tag.score >= tag.threshold for tag in segment.tags)
    assert build_timeline(runner, str(video), labelset, TimelineOptions(window=2)).segments()[0].tags is None
