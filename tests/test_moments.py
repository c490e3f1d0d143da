"""Find the moment: a windowed index (``xclip embed --windows``) and moment search over it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    encode_video,
    float32_rounding_bound,
    float64_head_logits,
    frame_pixels,
    head_rounding_bound,
    invoke,
    write_video,
)

from xclip_cli.cli.errors import ExitCode
from xclip_cli.jobs import moments
from xclip_cli.jobs.classify import load_frames, view_pixels
from xclip_cli.jobs.index import TABLE, Index, IndexEntry, IndexWriter, read_entries
from xclip_cli.jobs.moments import MomentOptions, first_pass, merge_windows, search_moments, window_scores
from xclip_cli.model.backend import VideoFeatures
from xclip_cli.model.head import head_logits
from xclip_cli.model.open import open_backend
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult

# Float32's unit roundoff: storing an embedding unit-length rounds each element twice more
# (the norm's own error cancels in the head's normalisation), moving a cosine by at most 4u relatively.
UNIT_ROUNDOFF = 2.0**-24
SECTION_FRAMES = 32  # 8 s per section at 4 frames per second: one default window of the tiny model


def _archive(folder: Path) -> Path:
    """A 24 s clip of three distinct sections (moving blocks, a flat colour, stripes)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = [frame_pixels(i, 64, 48, "moving") for i in range(SECTION_FRAMES)]
    frames += [np.full((48, 64, 3), (200, 30, 30), dtype=np.uint8) for _ in range(SECTION_FRAMES)]
    stripes = np.zeros((48, 64, 3), dtype=np.uint8)
    stripes[:, ::8] = 255
    frames += [np.roll(stripes, i, axis=1) for i in range(SECTION_FRAMES)]
    return encode_video(folder / "archive.mp4", frames, rate=4)


def _embed(model: Path, source: Path, index: Path, *extra: str) -> None:
    args = ["embed", str(source), "-o", str(index), "-m", str(model), "--windows", "-q", *extra]
    result = invoke(args)
    assert result.exit_code == ExitCode.OK, result.stderr


def test_window_scores_equal_classify_of_the_same_window(tiny_model_dir: Path, tmp_path: Path) -> None:
    clip = _archive(tmp_path / "footage")
    _embed(tiny_model_dir, clip, tmp_path / "index", "--dtype", "float32")
    index = Index(tmp_path / "index")
    windows = [entry for entry in index.entries if entry.status == "ok"]
    assert [(w.start, w.end) for w in windows] == [(0, 8), (4, 12), (8, 16), (12, 20), (16, 24)]
    assert index.windows == "8s every 4s" and {w.windows for w in windows} == {5}
    runner = open_backend(str(tiny_model_dir), "cpu", "fp32", "torch")
    queries = ["a red screen", "white stripes"]
    text = runner.text_features(queries)
    pixels = np.concatenate(
        [view_pixels(load_frames(runner, str(clip), ClassifyOptions(start=w.start, end=w.end))) for w in windows]
    )
    expected = runner.video_logits(pixels, text)  # classify --start/--end of each window, batched
    # classify's float32 forward is within B of the float64 one. The index's features come from
    # another float32 forward (batched otherwise: within B too, its head's share included), then
    # go through the search head (model.head: other arithmetic, its own bound B_head).
    stored = index.features(windows)
    head = runner.head_weights()
    exact_head = float64_head_logits(tiny_model_dir, stored.embeds, stored.patches, text)
    bound = (
        2 * float32_rounding_bound(tiny_model_dir, queries, pixels)
        + head_rounding_bound(head, stored.embeds, stored.patches, text, exact_head)
        + 4 * UNIT_ROUNDOFF * np.abs(expected).max()
    )
    ours = window_scores(head, index, windows, text, MomentOptions(exact=True))
    assert ours.shape == expected.shape and np.abs(ours - expected).max() <= bound, (ours, expected, bound)
    # The best moment of a query is the window classify scores highest for it.
    moments = search_moments(runner, index, queries, MomentOptions(top_k=1, merge=False))
    for moment, number in zip(moments, range(len(queries)), strict=True):
        best = max(windows, key=lambda w: _classify_logit(runner, clip, w, text, number))
        assert (moment.start, moment.end) == (best.start, best.end) and moment.query == queries[number]


def _blended_index(runner: object, folder: Path, windows: int) -> Index:
    """An index of ``windows`` windows, each a random convex blend of three of six random
    feature sets of the model's shapes (bench_search.py blends real windows so; the tiny random
    model's real windows are all alike), in float32."""
    rng = np.random.default_rng(0)
    size = runner.preprocess.crop[0]  # type: ignore[attr-defined]
    shapes = runner.video_features(np.zeros((1, runner.num_frames, 3, size, size), np.float32))  # type: ignore[attr-defined]
    source = VideoFeatures(
        rng.standard_normal((6, shapes.embeds.shape[1])).astype(np.float32),
        rng.standard_normal((6, *shapes.patches.shape[1:])).astype(np.float32),
    )
    picks = np.stack([rng.choice(6, 3, replace=False) for _ in range(windows)])
    blend = rng.dirichlet(np.ones(3), windows).astype(np.float32)
    embeds = np.einsum("nk,nkd->nd", blend, source.embeds[picks])
    embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
    patches = np.einsum("nk,nkpd->npd", blend, source.patches[picks])
    writer = IndexWriter(folder, runner, windows="8s every 4s")  # type: ignore[arg-type]
    extents = [(4.0 * i, 4.0 * i + 8) for i in range(windows)]
    video = VideoResult(path="/archive/a.mp4", model="tiny", duration=4.0 * windows + 4)
    writer.add(video, VideoFeatures(embeds, patches), extents)
    writer.close()
    return Index(folder)


def test_the_first_pass_scores_each_window_with_its_nearest_guides_conditioning(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass by its definition, computed another way: a window's value is the largest
    cosine of its embedding with the texts as the head conditions them on one of its three
    nearest guides (by embedding), each pair through the head itself. Then the two-stage scores:
    the best first-pass windows of each query get the exact pass's scores, others none."""
    runner = open_backend(str(tiny_model_dir), "cpu", "fp32", "torch")
    index = _blended_index(runner, tmp_path / "index", 200)
    windows = [entry for entry in index.entries if entry.status == "ok"]
    monkeypatch.setattr(moments, "GUIDES", 8)
    monkeypatch.setattr(moments, "PASS_CHUNK", 16)  # the pass's chunks, and a last short one
    text = runner.text_features(["a red screen", "white stripes", "a cat, a dog"])
    head = runner.head_weights()
    stored = index.features(windows)
    count, width = stored.embeds.shape
    guides = np.linspace(0, count - 1, 8).round().astype(int)
    similarity = stored.embeds.astype(np.float64) @ stored.embeds[guides].T.astype(np.float64)
    ranked = np.sort(similarity, axis=1)[:, ::-1]
    # A float32 dot product of unit vectors is within width·u of exact; with a gap of twice that
    # between the third and fourth nearest, the pass finds the same three guides.
    assert (ranked[:, 2] - ranked[:, 3]).min() > 2 * width * UNIT_ROUNDOFF
    nearest = guides[np.argsort(-similarity, axis=1)[:, :3]]  # (windows, 3) window numbers
    rows, guide_rows = np.repeat(np.arange(count), 3), nearest.reshape(-1)
    embeds, patches = stored.embeds[rows], stored.patches[guide_rows]
    pairs = head_logits(head, embeds, patches, text).reshape(count, 3, -1)
    exact_pairs = float64_head_logits(tiny_model_dir, embeds, patches, text)
    # Both sides are float32 runs of the same head on the same pairs (batched differently): each
    # within its rounding bound of the float64 result, so within twice that of each other; the
    # pass takes the stored embeddings as unit length (the head normalises them) and scales in
    # float64: their norms' distance from 1, and 2u, of the largest logit more.
    norms = np.abs(np.linalg.norm(stored.embeds.astype(np.float64), axis=1) - 1).max()
    bound = (
        2 * head_rounding_bound(head, embeds, patches, text, exact_pairs)
        + (norms + 2 * UNIT_ROUNDOFF) * np.abs(pairs).max()
    )
    ours = first_pass(head, index, windows, text) * np.exp(head.logit_scale)
    assert np.abs(ours - pairs.max(axis=1)).max() <= bound
    # Two stages: each query keeps its 50 best of the first pass (one moment asked: 50 candidates),
    # scored by the head as the exact pass scores them (in other batches: within twice the bound).
    two_stage = window_scores(head, index, windows, text, MomentOptions(top_k=1, candidates=1))
    every = window_scores(head, index, windows, text, MomentOptions(exact=True))
    exact = float64_head_logits(tiny_model_dir, stored.embeds, stored.patches, text)
    head_bound = head_rounding_bound(head, stored.embeds, stored.patches, text, exact)
    for column in range(len(text)):
        kept = np.flatnonzero(~np.isnan(two_stage[:, column]))
        assert set(kept) == set(np.argsort(-ours[:, column])[:50])
        assert np.abs(two_stage[kept, column] - every[kept, column]).max() <= 2 * head_bound
    assert len(np.flatnonzero(~np.isnan(two_stage).all(axis=1))) < count  # the queries together left some out


def _classify_logit(runner: object, clip: Path, window: IndexEntry, text: np.ndarray, number: int) -> float:
    frames = load_frames(runner, str(clip), ClassifyOptions(start=window.start, end=window.end))  # type: ignore[arg-type]
    return float(runner.video_logits(view_pixels(frames), text)[0, number])  # type: ignore[attr-defined]


def _entries(*spans: tuple[str, float, float]) -> list[IndexEntry]:
    return [IndexEntry(p, "ok", 0, i, 30.0, 64, 48, None, start, end, 4) for i, (p, start, end) in enumerate(spans)]


def test_neighbouring_matching_windows_merge_and_the_weakest_moment_sets_the_bar() -> None:
    windows = _entries(("a", 0, 8), ("a", 4, 12), ("a", 8, 16), ("a", 20, 28), ("b", 0, 8), ("b", 4, 12))
    scores = np.array([5.0, 9.0, 1.0, 7.0, 8.0, np.nan])  # NaN: left out by the first pass
    two = merge_windows("q", windows, scores, MomentOptions(top_k=2))
    assert [(m.path, m.start, m.end, m.score, m.best, m.windows) for m in two] == [
        ("a", 4, 12, 9.0, (4, 12), 1),  # 5 touches it but scores below the second moment's 8
        ("b", 0, 8, 8.0, (0, 8), 1),
    ]
    ten = merge_windows("q", windows, scores, MomentOptions(top_k=10))
    assert [(m.start, m.end, m.windows) for m in ten] == [(0, 16, 3), (0, 8, 1), (20, 28, 1)]
    # A window touching two moments joins them.
    bridge = _entries(("a", 0, 8), ("a", 12, 20), ("a", 6, 14), ("b", 0, 8))
    bridged = merge_windows("q", bridge, np.array([9.0, 8.0, 7.0, 6.0]), MomentOptions(top_k=3))
    assert [(m.path, m.start, m.end, m.windows) for m in bridged] == [("a", 0, 20, 3), ("b", 0, 8, 1)]
    # A bridge that joins two moments makes room for another: ties do not shrink the list.
    tied = _entries(("a", 0, 8), ("a", 16, 24), ("a", 8, 16), ("b", 0, 8))
    kept = merge_windows("q", tied, np.array([9.0, 8.0, 8.0, 7.0]), MomentOptions(top_k=2))
    assert [(m.path, m.start, m.end) for m in kept] == [("a", 0, 24), ("b", 0, 8)]
    # --min-score stops at the bar; --no-merge keeps windows apart.
    assert [m.score for m in merge_windows("q", windows, scores, MomentOptions(top_k=9, min_score=6.5))] == [9, 8, 7]
    separate = merge_windows("q", windows, scores, MomentOptions(top_k=3, merge=False))
    assert [(m.path, m.start) for m in separate] == [("a", 4), ("b", 0), ("a", 20)]


def test_search_from_the_command_line_in_every_format(tiny_model_dir: Path, tmp_path: Path) -> None:
    clip = _archive(tmp_path / "footage")
    _embed(tiny_model_dir, clip.parent, tmp_path / "index")
    base = ["search", str(tmp_path / "index"), "a red screen", "white stripes", "-k", "2"]
    as_json = invoke([*base, "-f", "json"])
    assert as_json.exit_code == ExitCode.OK, as_json.stderr
    grouped = json.loads(as_json.stdout)
    assert [group["query"] for group in grouped] == ["a red screen", "white stripes"]
    for group in grouped:
        scores = [moment["score"] for moment in group["moments"]]
        assert scores == sorted(scores, reverse=True) and 1 <= len(scores) <= 2
        assert all(m["path"] == str(clip) and 0 <= m["start"] < m["end"] <= 24 for m in group["moments"])
    rows = list(csv.DictReader(io.StringIO(invoke([*base, "-f", "csv"]).stdout)))
    assert [(r["query"], r["rank"]) for r in rows][:1] == [("a red screen", "1")]
    lines = [json.loads(line) for line in invoke([*base, "-f", "jsonl"]).stdout.splitlines()]
    assert [line["score"] for line in lines] == [m["score"] for g in grouped for m in g["moments"]]
    table = invoke(base)
    assert table.exit_code == ExitCode.OK and "white stripes" in table.stdout
    # Each format written to -o is known as ours: a rerun replaces it without --overwrite.
    for name in ("m.csv", "m.json", "m.jsonl"):
        for _ in range(2):
            again = invoke([*base, "-o", str(tmp_path / name)])
            assert again.exit_code == ExitCode.OK, again.stderr
    # Windows are not videos: classify --index refuses a windowed index in one line.
    whole_videos = invoke(["classify", "--index", str(tmp_path / "index"), "-l", "a, b"])
    assert whole_videos.exit_code == ExitCode.USAGE and "holds windows (8s every 4s)" in whole_videos.stderr
    # Options that only mean something for moments are refused on a whole-video index.
    whole = invoke(["embed", str(clip), "-o", str(tmp_path / "whole"), "-m", str(tiny_model_dir), "-q"])
    assert whole.exit_code == ExitCode.OK, whole.stderr
    refused = invoke(["search", str(tmp_path / "whole"), "a", "b"])
    assert refused.exit_code == ExitCode.USAGE and "holds whole videos" in refused.stderr


def test_a_windowed_embed_resumes_after_a_kill_and_refuses_other_windows(tiny_model_dir: Path, tmp_path: Path) -> None:
    footage = tmp_path / "footage"
    _archive(footage)
    write_video(footage / "a-short.mp4", num_frames=12, rate=4)  # 3 s: shorter than one window; listed first
    index = tmp_path / "index"
    _embed(tiny_model_dir, footage, index)
    entries = read_entries(index)
    short = [entry for entry in entries if entry.path.endswith("a-short.mp4")]
    assert [(e.start, e.end, e.windows) for e in short] == [(0, 3, 1)]
    # A kill between a video's rows leaves some of its windows: that video is redone, once.
    table = index / TABLE
    lines = table.read_text(encoding="utf-8").splitlines(keepends=True)
    archive_rows = [i for i, line in enumerate(lines) if "archive.mp4" in line]
    table.write_text("".join(lines[: archive_rows[2]]), encoding="utf-8")
    again = invoke(["embed", str(footage), "-o", str(index), "-m", str(tiny_model_dir), "--windows"])
    assert again.exit_code == ExitCode.OK, again.stderr
    assert "xclip: 1 ok, 0 failed" in again.stderr
    after = read_entries(index)
    assert sorted((e.path, e.start) for e in after) == sorted((e.path, e.start) for e in entries)
    # Other windows, or whole videos, would mix two kinds of rows: refused in one line before any work.
    other = invoke(["embed", str(footage), "-o", str(index), "-m", str(tiny_model_dir), "--windows", "--window", "4"])
    assert other.exit_code == ExitCode.USAGE
    assert "made with --windows 8s every 4s, this run uses 4s every 2s" in other.stderr
    assert other.stderr.count("\n") == 1
    whole = invoke(["embed", str(footage), "-o", str(index), "-m", str(tiny_model_dir)])
    assert whole.exit_code == ExitCode.USAGE and "made with --windows 8s every 4s, this run uses none" in whole.stderr
    loose = invoke(["embed", str(footage), "-o", str(tmp_path / "x"), "-m", str(tiny_model_dir), "--window", "4"])
    assert loose.exit_code == ExitCode.USAGE and "add it" in loose.stderr


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_an_index_stores_the_dtype_it_says(tiny_model_dir: Path, tmp_path: Path, dtype: str) -> None:
    clip = _archive(tmp_path / "footage")
    _embed(tiny_model_dir, clip, tmp_path / "index", "--dtype", dtype)
    assert json.loads((tmp_path / "index" / "index.json").read_text())["dtype"] == dtype
    assert np.load(tmp_path / "index" / "patches-00000.npy").dtype == np.dtype(dtype)
    # A rerun without --dtype continues the index as it was made.
    write_video(clip.parent / "more.mp4", num_frames=12, rate=4)
    _embed(tiny_model_dir, clip.parent, tmp_path / "index")
    assert np.load(tmp_path / "index" / "patches-00001.npy").dtype == np.dtype(dtype)


def test_search_writes_selects_an_editor_opens(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The three-line workflow: embed with windows, search, open the selects (read back here by
    OpenTimelineIO's own adapter): one clip per moment, best first, its source range the moment's."""
    import opentimelineio as otio

    clip = _archive(tmp_path / "footage")
    _embed(tiny_model_dir, clip.parent, tmp_path / "index")
    found = invoke(["search", str(tmp_path / "index"), "a red screen", "-k", "2", "-f", "json"])
    moments = json.loads(found.stdout)[0]["moments"]
    out = tmp_path / "selects.otio"
    written = invoke(["search", str(tmp_path / "index"), "a red screen", "-k", "2", "-o", str(out)])
    assert written.exit_code == ExitCode.OK, written.stderr
    timeline = otio.adapters.read_from_file(str(out))
    clips = list(timeline.find_clips())
    assert len(clips) == len(moments)
    for read, moment in zip(clips, moments, strict=True):
        source = read.source_range
        start = source.start_time.to_seconds()
        assert abs(start - moment["start"]) < 1 / 4 + 1e-6  # whole frames at the clip's 4 fps, start floored
        assert abs(start + source.duration.to_seconds() - moment["end"]) < 1 / 4 + 1e-6
        assert "a red screen" in read.name and read.media_reference.target_url.endswith("archive.mp4")
    whole = invoke(["embed", str(clip), "-o", str(tmp_path / "whole"), "-m", str(tiny_model_dir), "-q"])
    assert whole.exit_code == ExitCode.OK
    refused = invoke(["search", str(tmp_path / "whole"), "a", "-f", "edl"])
    assert refused.exit_code == ExitCode.USAGE and "are for moments" in refused.stderr
