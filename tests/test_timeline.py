"""`xclip timeline`: sliding windows in one decoding pass, merged into segments."""

from __future__ import annotations

import csv
import io
import itertools
import json
import weakref
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from catalogue import _flat
from helpers import COLOURS_TEXT, encode_video, invoke
from hypothesis import given, settings
from hypothesis import strategies as st

from xclip_cli.errors import ExitCode
from xclip_cli.jobs.classify import classify_videos
from xclip_cli.jobs.timeline import _window_pixels, build_timeline, window_extents
from xclip_cli.labels import inline_labelset
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions, TimelineOptions

COLOURS = [(0, 255, 0), (255, 255, 0), (255, 255, 255), (255, 0, 0), (0, 0, 255), (0, 255, 255), (128, 128, 128)]
RATE = 4  # frames per second of the synthetic videos
SEGMENT_SECONDS = 8


@pytest.fixture(scope="module")
def runner(tiny_model_dir: Path) -> XClipRunner:
    return XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")


class Segmented(NamedTuple):
    video: Path
    truth: list[str]  # the label of each segment, in order
    labels: str  # the --labels that tell the segments apart


@pytest.fixture(scope="module")
def segmented(runner: XClipRunner, tmp_path_factory: pytest.TempPathFactory) -> Segmented:
    """A video of three solid-colour segments, and three colour words the tiny model tells them apart by.

    Random weights: which label wins for a colour is whatever the fixed tiny model says, and one
    word may win for every colour (its text features lean the way all the flat videos do). So the
    colours and three of the words are picked (deterministically: the widest margin between each
    colour's first and second label) among those where each colour's top label differs.
    """
    folder = tmp_path_factory.mktemp("timeline")
    labelset = inline_labelset(COLOURS_TEXT)
    logits = {}
    for colour in COLOURS:
        path = folder / f"{colour}.mp4"
        encode_video(path, _flat(colour, 8))
        (result,) = classify_videos(runner, [str(path)], labelset, ClassifyOptions(top_k=len(labelset)))
        logits[colour] = {p.label: p.logit for p in result.predictions}

    def margin(choice: tuple[tuple[tuple[int, int, int], ...], tuple[str, ...]]) -> float:
        colours, words = choice
        ranked = [sorted(words, key=lambda word: -logits[colour][word]) for colour in colours]
        if len({ranking[0] for ranking in ranked}) < len(colours):
            return -np.inf
        return min(logits[c][r[0]] - logits[c][r[1]] for c, r in zip(colours, ranked, strict=True))

    choices = itertools.product(itertools.permutations(COLOURS, 3), itertools.combinations(labelset.names, 3))
    colours, words = max(choices, key=margin)
    assert margin((colours, words)) > 0
    frames = [frame for colour in colours for frame in _flat(colour, SEGMENT_SECONDS * RATE)]
    video = folder / "segments.mp4"
    encode_video(video, frames, rate=RATE)
    truth = [max(words, key=lambda word: logits[colour][word]) for colour in colours]
    return Segmented(video, truth, ", ".join(words))


@settings(max_examples=300, deadline=None)
@given(
    duration=st.floats(min_value=0.05, max_value=4000),
    window=st.floats(min_value=0.5, max_value=60),
    stride_fraction=st.floats(min_value=0.1, max_value=1.0),
)
@pytest.mark.heavy
def test_windows_cover_the_video_to_its_end(duration: float, window: float, stride_fraction: float) -> None:
    stride = window * stride_fraction
    extents = window_extents(duration, window, stride)
    assert extents[0][0] == 0.0
    assert extents[-1][1] == pytest.approx(duration)
    for (start, end), (next_start, _) in itertools.pairwise(extents):
        assert next_start >= start and next_start <= end + 1e-9  # no gap between windows
    if duration > window:
        assert all(end - start == pytest.approx(window) for start, end in extents)
    else:
        assert extents == [(0.0, duration)]


def test_segments_find_the_boundaries_within_one_stride(runner: XClipRunner, segmented: Segmented) -> None:
    video, truth, labels = segmented
    timeline = build_timeline(runner, str(video), inline_labelset(labels), TimelineOptions(window=4, stride=2))
    assert timeline.duration == pytest.approx(3 * SEGMENT_SECONDS)
    segments = timeline.segments()
    cuts = [segment.end for segment in segments[:-1]]
    true_cuts = [SEGMENT_SECONDS, 2 * SEGMENT_SECONDS]
    assert all(min(abs(cut - true) for true in true_cuts) <= timeline.stride for cut in cuts)
    assert all(min(abs(cut - true) for cut in cuts) <= timeline.stride for true in true_cuts)
    for index, label in enumerate(truth):  # the middle of each true segment has its colour's label
        middle = (index + 0.5) * SEGMENT_SECONDS
        assert next(s for s in segments if s.start <= middle < s.end).label == label


def test_merge_and_no_merge_agree(runner: XClipRunner, segmented: Segmented) -> None:
    video = segmented.video
    timeline = build_timeline(runner, str(video), inline_labelset(COLOURS_TEXT), TimelineOptions(window=4, stride=2))
    raw, merged = timeline.segments(merge=False), timeline.segments(merge=True)
    assert len(raw) == len(timeline.windows)
    assert [label for label, _ in itertools.groupby(s.label for s in raw)] == [s.label for s in merged]
    assert sum(s.windows for s in merged) == len(raw)
    assert merged[0].start == 0.0 and merged[-1].end == pytest.approx(timeline.duration)
    assert all(a.end == b.start for a, b in itertools.pairwise(merged))  # they tile the video


def test_each_window_equals_a_classify_of_that_stretch(runner: XClipRunner, segmented: Segmented) -> None:
    video = segmented.video
    labelset = inline_labelset(COLOURS_TEXT)
    timeline = build_timeline(runner, str(video), labelset, TimelineOptions(window=6, stride=5, batch_size=3))
    assert [(w.start, w.end) for w in timeline.windows][-1] == (18.0, 24.0)  # the end gets its own window
    for window in timeline.windows:
        options = ClassifyOptions(top_k=len(labelset), start=window.start, end=window.end)
        (result,) = classify_videos(runner, [str(video)], labelset, options)
        expected = {p.label: p.probability for p in result.predictions}
        got = dict(zip(labelset.names, window.probabilities.tolist(), strict=True))
        assert got == pytest.approx(expected, abs=1e-5)  # batched windows: float noise only
        assert window.logits is not None
        logits = dict(zip(labelset.names, window.logits.tolist(), strict=True))
        assert logits == pytest.approx({p.label: p.logit for p in result.predictions}, abs=1e-4)
    # A raw window's predictions report its real logits (a merged segment's: their mean), never NaN.
    for segment, window in zip(timeline.segments(merge=False, top_k=2), timeline.windows, strict=True):
        assert [p.logit for p in segment.predictions] == pytest.approx(
            [float(window.logits[labelset.names.index(p.label)]) for p in segment.predictions]
        )


def test_frames_are_dropped_once_no_window_needs_them() -> None:
    """Over 300 windows of a 3000-frame stream, only about two windows' frames are alive at a time."""
    alive: weakref.WeakSet[torch.Tensor] = weakref.WeakSet()

    def frames():
        for index in range(3000):
            tensor = torch.zeros(1)
            alive.add(tensor)
            yield index, tensor

    windows = [tuple(range(start, start + 20, 2)) for start in range(0, 2980, 10)]
    largest = 0
    for pixels, warnings in _window_pixels("stream", windows, frames()):
        assert pixels.shape == (10, 1) and warnings == []
        del pixels
        largest = max(largest, len(alive))
    assert largest <= 31


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "table"])
def test_cli_formats(tiny_model_dir: Path, segmented: Segmented, fmt: str) -> None:
    video, truth, labels = segmented
    args = ["timeline", str(video), "--model", str(tiny_model_dir), "--labels", labels]
    result = invoke([*args, "--window", "4", "--stride", "2", "-f", fmt])
    assert result.exit_code == ExitCode.OK, result.stderr
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert rows[0]["label"] == truth[0] and rows[-1]["end_ms"] == "24000"
        assert all(int(row["start_ms"]) == round(float(row["start"]) * 1000) for row in rows)
    elif fmt == "json":
        document = json.loads(result.stdout)
        assert document["merged"] is True and document["window"] == 4 and document["stride"] == 2
        assert document["segments"][-1]["label"] == truth[-1] and len(document["segments"][0]["predictions"]) == 3
    elif fmt == "jsonl":
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert records[0]["path"] == str(video) and records[0]["start_ms"] == 0
    else:
        assert "label" in result.stdout and "00:24.0" in result.stdout


def test_cli_no_merge_and_plot(tiny_model_dir: Path, segmented: Segmented, tmp_path: Path) -> None:
    video = segmented.video
    plot = tmp_path / "timeline.png"
    args = ["timeline", str(video), "--model", str(tiny_model_dir), "--labels", COLOURS_TEXT, "-f", "jsonl"]
    result = invoke([*args, "--window", "4", "--stride", "2", "--no-merge", "--plot", str(plot)])
    assert result.exit_code == ExitCode.OK, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 11 and [r["start"] for r in records[:3]] == [0, 2, 4]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_window_comes_from_the_checkpoint(runner: XClipRunner, segmented: Segmented) -> None:
    video = segmented.video
    timeline = build_timeline(runner, str(video), inline_labelset(COLOURS_TEXT))
    assert (timeline.window, timeline.stride) == (runner.num_frames * 1.0, runner.num_frames / 2)
    assert np.isclose(sum(w.owns_to - w.owns_from for w in timeline.windows), timeline.duration)


def test_prefetch_hands_over_errors_and_stops_when_left_early() -> None:
    from xclip_cli.errors import VideoError
    from xclip_cli.jobs.timeline import _Prefetch

    def failing():
        yield from range(3)
        raise VideoError("x.mp4", "damaged")

    got = []
    with pytest.raises(VideoError, match="damaged"), _Prefetch(failing(), 2) as items:
        got.extend(items)
    assert got == [0, 1, 2]
    prefetch = _Prefetch(itertools.count(), 2)
    with prefetch as items:
        assert [next(items), next(items)] == [0, 1]
    assert not prefetch.thread.is_alive()


def test_a_damaged_end_is_a_warning_not_a_failure(runner: XClipRunner, tmp_path: Path) -> None:
    from catalogue import _numbered

    path = tmp_path / "damaged-end.mp4"
    encode_video(
        path,
        _numbered(240),
        rate=12,
        options={"g": "60", "crf": "10", "bf": "0"},
        container_options={"movflags": "faststart"},
    )
    data = bytearray(path.read_bytes())
    start = len(data) * 92 // 100
    data[start : start + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    timeline = build_timeline(runner, str(path), inline_labelset(COLOURS_TEXT), TimelineOptions(window=1, stride=0.5))
    assert len(timeline.windows) == 39 and timeline.warnings


@pytest.mark.parametrize(("value", "message"), [("nan", "is not a time"), ("inf", "is not a time"), ("0", "positive")])
def test_cli_refuses_windows_that_are_not_positive_numbers(
    tiny_model_dir: Path, segmented: Segmented, value: str, message: str
) -> None:
    video = segmented.video
    for option in ("--window", "--stride"):
        args = ["timeline", str(video), "--model", str(tiny_model_dir), "--labels", COLOURS_TEXT, option, value]
        result = invoke(args)
        assert result.exit_code == ExitCode.USAGE and message in result.stderr, result.stderr


def test_a_stride_beyond_the_window_is_refused_not_left_as_gaps(tiny_model_dir: Path, segmented: Segmented) -> None:
    video = segmented.video
    base = ["timeline", str(video), "--model", str(tiny_model_dir), "--labels", COLOURS_TEXT, "-f", "json"]
    for args, window in ((["--window", "2", "--stride", "5"], "2"), (["--stride", "0:09"], "8")):  # 8: the default
        result = invoke([*base, *args])
        assert result.exit_code == ExitCode.USAGE and result.stdout == ""
        assert f"--stride {args[-1].replace('0:0', '')} s is longer than the {window} s window" in result.stderr
    result = invoke([*base, "--window", "0:04", "--stride", "00:00:04"])  # clock times; stride = window tiles
    assert result.exit_code == 0, result.stderr
    assert (json.loads(result.stdout)["window"], json.loads(result.stdout)["stride"]) == (4, 4)


def test_the_plot_shows_every_segment_label_and_a_band_matching_the_segments() -> None:
    from matplotlib.colors import to_rgba

    from xclip_cli.output.plot import PLOT_LABELS, pyplot, timeline_figure
    from xclip_cli.results import Timeline, Window

    labels = tuple(f"label {i}" for i in range(12))
    windows = []
    for i in range(9):  # nine windows, each topped by another label: nine segments
        probabilities = np.full(len(labels), 0.5 / (len(labels) - 1))
        probabilities[i] = 0.5
        windows.append(Window(2.0 * i, 2.0 * i + 4, 2.0 * i, 2.0 * i + 2, probabilities))
    timeline = Timeline("v.mp4", "m", "s", 18.0, 4.0, 2.0, tuple(windows), labels)
    segments = timeline.segments()
    assert len({segment.label for segment in segments}) == 9 > PLOT_LABELS
    plt = pyplot()
    figure = timeline_figure(timeline, segments, plt)
    axes = figure.axes[0]
    colour = {line.get_label(): to_rgba(line.get_color()) for line in axes.get_lines()}
    assert {segment.label for segment in segments} <= set(colour)
    assert [text.get_text() for text in axes.get_legend().get_texts()] == list(colour)
    (band,) = [collection for collection in axes.collections if collection.get_gid() == "segments"]
    extents = [x for path in band.get_paths() for x in (path.vertices[:, 0].min(), path.vertices[:, 0].max())]
    assert extents == pytest.approx([x for segment in segments for x in (segment.start, segment.end)])
    assert [tuple(face) for face in band.get_facecolors()] == [colour[segment.label] for segment in segments]
    plt.close(figure)
