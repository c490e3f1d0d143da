"""Benchmark moment search: embedding per hour of 720p, index size, search latency, agreement.

With the randomly initialised full-size X-CLIP of ``common.py`` on ONNX Runtime (prepared once
in ``--workdir``):

* ``xclip embed --windows`` of a 60 s 1280x720 30 fps clip with a keyframe every 2 s, with
  ``--sampling keyframes`` and exact frames, interleaved: seconds per hour of footage;
* the index's bytes per hour (default windows: 8 s every 4 s, 900 per hour), float16 and float32;
* search latency over ``--windows`` windows (default 100,000) for one query: two-stage (a first
  pass over all with the texts conditioned on guide windows, X-CLIP's head on the best
  candidates) and ``--exact``; the first is interleaved over rounds, the exact one runs once;
* how often the two-stage top 10 equals the exact top 10 (as sets, and the best window).

The large index is made of real windows' features (the clip embedded above, and the real
clips in tests/data/videos, 2 s windows) mixed in random triples (a convex blend of three
distinct windows' embeddings and patches, Dirichlet weights): its values look like video
features, which the agreement needs; the latency does not depend on them. Agreement counts
ties: a two-stage top-10 window whose exact score reaches the exact 10th best (within 1e-5)
is in the top 10. Random weights: agreement here says how the method behaves on this model,
not on the trained one (whose prompt generator was trained; see docs/index-and-search.md).

Run it with ``python benchmarks/bench_search.py [--windows N] [--queries N] [--repeat N] [--quick] [--smoke]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
from common import REPO, Timing, add_bench_arguments, bench_session, interleaved, log, print_table, timed

from xclip_cli.jobs import moments
from xclip_cli.jobs.embed import plan_embedding
from xclip_cli.jobs.index import Index, IndexWriter
from xclip_cli.jobs.moments import MomentOptions, first_pass, search_moments, window_scores
from xclip_cli.labels import resolve_labels
from xclip_cli.model.backend import VideoFeatures
from xclip_cli.model.head import HeadWeights
from xclip_cli.model.open import open_backend
from xclip_cli.options import ClassifyOptions, TimelineOptions
from xclip_cli.results import VideoResult

SECONDS = 60
WINDOWS_PER_VIDEO = 100  # rows of the large index per "video"
TOP = 10
TIE = 1e-5  # logits: scores this close are a tie (float32 head rounding here is ~5e-7)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    parser.add_argument("--windows", type=int, default=100_000, help="windows in the large index")
    parser.add_argument("--queries", type=int, default=16, help="queries compared with --exact (scored together)")
    parser.add_argument(
        "--conditioned",
        action="store_true",
        help="the checkpoint's prompt generator scaled to unit gain, as the tests' (tests/helpers.py)",
    )
    args = parser.parse_args(argv)
    with bench_session(args, keep_cache=True) as bench:
        windows = 400 if bench.smoke else args.windows
        model_dir = _conditioned(bench.checkpoint()) if args.conditioned else bench.checkpoint()
        runner = open_backend(str(model_dir), "cpu", "fp32", "auto")
        clips = [bench.clip(6 if bench.smoke else SECONDS, gop=60)]
        embed_rows, indexes = _embed(bench.workdir, runner, clips[0], bench.repeat)
        real = Index(indexes["exact"])
        per_window = {dtype: _bytes_per_window(indexes[dtype]) for dtype in ("float16", "float32")}
        sources = _sources(bench.workdir, runner, real, model_dir.name)
        large = _large_index(bench.workdir / f"search-large-{model_dir.name}", runner, sources, windows)
        queries = [f"a video of {name}" for name in resolve_labels("kinetics400").names[:: 400 // max(1, args.queries)]]
        queries = queries[: args.queries]
        opened, open_seconds = _open(large)
        entries = [entry for entry in opened.entries if entry.status == "ok"]
        text = runner.text_features(queries)
        head = runner.head_weights()
        two_stage = Timing(f"scores, two-stage, {len(entries):,} windows, 1 query")
        whole = Timing("search_moments, two-stage, 1 query", note="+ text side, model check, merging")
        log(f"two-stage search over {len(entries):,} windows, {bench.repeat} round(s) ...")
        options = MomentOptions(top_k=TOP)
        rows = [
            (two_stage, lambda: window_scores(head, opened, entries, text[:1], options)),
            (whole, lambda: search_moments(runner, opened, queries[:1], options)),
        ]
        interleaved(rows, bench.repeat)
        exact = Timing(f"scores, --exact, {len(entries):,} windows, 1 query", note="once")
        log(f"exact scores of every window for 1 query, then for all {len(queries)} at once ...")
        seconds, _ = timed(lambda: window_scores(head, opened, entries, text[:1], MomentOptions(exact=True)))
        exact.samples.append(seconds)
        drift = _float16_drift(head, indexes, text)
        every = window_scores(head, opened, entries, text, MomentOptions(exact=True))
        chosen = window_scores(head, opened, entries, text, options)
        first = first_pass(head, opened, entries, text)
        agree_sets, agree_best, needed = [], [], []
        for number in range(len(queries)):
            best_exact = np.argsort(-every[:, number])[:TOP]
            best_two = np.argsort(-np.nan_to_num(chosen[:, number], nan=-np.inf))[:TOP]
            # A window the two-stage top 10 lists belongs to the exact top 10 when its exact score
            # reaches the exact 10th best, up to TIE (windows that tie there are interchangeable).
            tenth, first_score = every[best_exact[-1], number], every[best_exact[0], number]
            agree_sets.append(float(np.mean(every[best_two, number] >= tenth - TIE)))
            agree_best.append(bool(every[best_two[0], number] >= first_score - TIE))
            rank = np.empty(len(entries), dtype=np.int64)
            rank[np.argsort(-first[:, number])] = np.arange(len(entries))
            needed.append(int(rank[best_exact].max()) + 1)
    print("\n=== xclip-cli benchmark: moment search ===")
    print_table(f"embedding a {clips[0].name} (per clip; medians of {bench.repeat} round(s))", embed_rows)
    hour = 3600 / (6 if bench.smoke else SECONDS)
    for row in embed_rows:
        print(f"  {row.name:<60}{row.median * hour / 60:8.1f} min per hour of footage")
    print(f"\nindex size (8 s windows every 4 s: 900 per hour; {_count(real)} windows here)")
    for dtype, size in per_window.items():
        print(f"  {dtype:<10}{size / 1024:8.1f} KiB per window  {size * 900 / 2**20:8.1f} MiB per hour of footage")
    print(f"  float16 against float32 storage: scores move by at most {drift:.2e} (logits; {len(queries)} queries)")
    print_table("search latency (index opened; model loaded)", [two_stage, whole, exact])
    print(f"  opening the index ({len(entries):,} windows): {open_seconds:.2f} s")
    print(f"  two-stage / exact: {two_stage.median / exact.median:.4f}x")
    print(
        f"\nagreement with --exact over {len(queries)} queries (candidates: {MomentOptions().candidates}, "
        f"guides: {moments.GUIDES}, each window the best of its {moments.NEAREST_GUIDES} nearest)"
    )
    print(f"  top-{TOP} windows as a set (ties within {TIE:g}): mean {statistics.mean(agree_sets):.1%} "
          f"(per query {agree_sets})")  # fmt: skip
    print(f"  best window the same: {sum(agree_best)}/{len(agree_best)}")
    print(f"  first-pass candidates the exact top {TOP} needed, per query: {needed}")


def _conditioned(model_dir: Path) -> Path:
    """A copy of ``model_dir`` whose prompt generator has unit gain (``helpers.condition_prompt_generator``):
    transformers' std-1 draw makes its offsets dwarf the text features, which no trained model does."""
    folder = model_dir.with_name(model_dir.name + "-conditioned")
    if (folder / "COMPLETE").exists():
        return folder
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import condition_prompt_generator
    from transformers import XCLIPModel, XCLIPProcessor

    model = XCLIPModel.from_pretrained(model_dir)
    condition_prompt_generator(model)
    model.save_pretrained(folder)
    XCLIPProcessor.from_pretrained(model_dir).save_pretrained(folder)
    (folder / "COMPLETE").write_text(f"{model_dir.name}, prompt generator scaled\n")
    return folder


def _embed(workdir: Path, runner: object, clip: Path, repeat: int) -> tuple[list[Timing], dict[str, Path]]:
    """Embed ``clip`` with windows: keyframes and exact frames (float16) interleaved, then once float32."""
    indexes = {kind: workdir / f"search-index-{kind}" for kind in ("keyframes", "exact", "float16", "float32")}
    rows = []
    for sampling in ("keyframes", "exact"):
        rows.append(
            (Timing(f"embed --windows --sampling {sampling}"), _embedder(runner, clip, indexes[sampling], sampling))
        )
    log(f"embedding {clip.name} with windows, {repeat} round(s) ...")
    interleaved(rows, repeat)
    for dtype in ("float16", "float32"):
        _embedder(runner, clip, indexes[dtype], "exact", dtype)()
    return [timing for timing, _ in rows], indexes


def _embedder(runner: object, clip: Path, folder: Path, sampling: str, dtype: str | None = None):
    def run() -> None:
        options = ClassifyOptions(sampling=sampling)
        plan = plan_embedding(folder, [str(clip)], "bench", "fp32", options, TimelineOptions(), dtype, overwrite=True)
        list(plan.run(runner))  # type: ignore[arg-type]

    return run


def _float16_drift(head: HeadWeights, indexes: dict[str, Path], text: np.ndarray) -> float:
    """The largest change of a window's exact score between float16 and float32 storage."""
    scores = []
    for dtype in ("float16", "float32"):
        index = Index(indexes[dtype])
        ok = [entry for entry in index.entries if entry.status == "ok"]
        scores.append(window_scores(head, index, ok, text, MomentOptions(exact=True)))
    return float(np.max(np.abs(scores[0] - scores[1])))


def _bytes_per_window(folder: Path) -> float:
    index = Index(folder)
    stored = sum(path.stat().st_size for path in folder.glob("*.npy"))
    return stored / _count(index)


def _sources(workdir: Path, runner: object, real: Index, model: str) -> VideoFeatures:
    """The real windows the large index blends: the benchmark clip's, and those of the clips the
    tests ship (real footage, 2 s windows every second: they are short), embedded once."""
    folder = workdir / f"search-sources-{model}"
    if not (folder / "COMPLETE").exists():
        clips = sorted(str(path) for path in (REPO / "tests" / "data" / "videos").iterdir() if path.suffix != ".md")
        plan = plan_embedding(folder, clips, "bench", "fp32", ClassifyOptions(), TimelineOptions(window=2, stride=1),
                              "float32", overwrite=True)  # fmt: skip
        list(plan.run(runner))  # type: ignore[arg-type]
        (folder / "COMPLETE").write_text("ok\n")
    parts = [index.features([e for e in index.entries if e.status == "ok"]) for index in (real, Index(folder))]
    return VideoFeatures(np.concatenate([p.embeds for p in parts]), np.concatenate([p.patches for p in parts]))


def _large_index(folder: Path, runner: object, source: VideoFeatures, windows: int) -> Path:
    """An index of ``windows`` windows, each a random convex blend (Dirichlet weights) of three
    distinct real windows of ``source`` (built once): no two alike, as in an archive."""
    done = folder / "COMPLETE"
    if done.exists() and _count(Index(folder)) == windows and done.read_text() == f"{len(source)} sources\n":
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    log(f"writing an index of {windows:,} windows blended from {len(source)} real ones (once) ...")
    rng = np.random.default_rng(0)
    writer = IndexWriter(folder, runner, windows="8s every 4s", dtype="float16")  # type: ignore[arg-type]
    for video in range(0, windows, WINDOWS_PER_VIDEO):
        count = min(WINDOWS_PER_VIDEO, windows - video)
        picks = np.stack([rng.choice(len(source), 3, replace=False) for _ in range(count)])
        w = rng.dirichlet(np.ones(3), count).astype(np.float32)  # (count, 3)
        embeds = np.einsum("nk,nkd->nd", w, source.embeds[picks])
        embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
        patches = np.einsum("nk,nkpd->npd", w, source.patches[picks])
        extents = [(4.0 * i, 4.0 * i + 8) for i in range(count)]
        result = VideoResult(
            path=f"/archive/video-{video // WINDOWS_PER_VIDEO:05d}.mp4", model="bench", duration=4.0 * count + 4
        )
        writer.add(result, VideoFeatures(embeds, patches), extents)
    writer.close()
    done.write_text(f"{len(source)} sources\n")
    return folder


def _count(index: Index) -> int:
    return sum(entry.status == "ok" for entry in index.entries)


def _open(folder: Path) -> tuple[Index, float]:
    seconds, index = timed(lambda: Index(folder))
    return index, seconds


if __name__ == "__main__":
    main()
