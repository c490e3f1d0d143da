"""Benchmark moment search: embedding per hour of 720p, index size, search latency, agreement.

With the randomly initialised full-size X-CLIP of ``common.py`` on ONNX Runtime (prepared once
in ``--workdir``):

* ``xclip embed --windows`` of a 60 s 1280x720 30 fps clip with a keyframe every 2 s, with
  ``--sampling keyframes`` and exact frames, interleaved: seconds per hour of footage;
* the index's bytes per hour (default windows: 8 s every 4 s, 900 per hour), float16 and float32;
* search latency over ``--windows`` windows (default 100,000) for one query: two-stage (the
  embedding cosine over all, X-CLIP's head on the best candidates) and ``--exact``; the first
  is interleaved over rounds, the exact one (a minute or more) runs once per query;
* how often the two-stage top 10 equals the exact top 10 (as sets, and the best window).

The large index is made of the real windows' features (the clips embedded above) mixed in
random pairs (a convex blend of two windows' embeddings and patches): its values look like
video features, which the agreement needs; the latency does not depend on them. Random
weights: agreement here says how the method behaves on this model, not on the trained one
(whose prompt generator was trained; see docs/search.md).

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

from xclip_cli.jobs.embed import plan_embedding
from xclip_cli.jobs.index import Index, IndexWriter
from xclip_cli.jobs.moments import MomentOptions, search_moments, window_scores
from xclip_cli.labels import resolve_labels
from xclip_cli.model.backend import VideoFeatures
from xclip_cli.model.open import open_backend
from xclip_cli.options import ClassifyOptions, TimelineOptions
from xclip_cli.results import VideoResult

SECONDS = 60
WINDOWS_PER_VIDEO = 100  # rows of the large index per "video"
TOP = 10


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    parser.add_argument("--windows", type=int, default=100_000, help="windows in the large index")
    parser.add_argument("--queries", type=int, default=3, help="queries compared with --exact (each a minute or more)")
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
        large = _large_index(bench.workdir / f"search-large-{model_dir.name}", runner, real, windows)
        queries = [f"a video of {name}" for name in resolve_labels("kinetics400").names[:: 400 // max(1, args.queries)]]
        queries = queries[: args.queries]
        opened, open_seconds = _open(large)
        entries = [entry for entry in opened.entries if entry.status == "ok"]
        text = runner.text_features(queries)
        two_stage = Timing(f"scores, two-stage, {len(entries):,} windows, 1 query")
        whole = Timing("search_moments, two-stage, 1 query", note="+ text side, model check, merging")
        log(f"two-stage search over {len(entries):,} windows, {bench.repeat} round(s) ...")
        first_pass = MomentOptions(top_k=TOP)
        rows = [
            (two_stage, lambda: window_scores(runner, opened, entries, text[:1], first_pass)),
            (whole, lambda: search_moments(runner, opened, queries[:1], first_pass)),
        ]
        interleaved(rows, bench.repeat)
        exact = Timing(f"scores, --exact, {len(entries):,} windows, 1 query", note="once per query")
        drift = _float16_drift(runner, indexes, text)
        agree_sets, agree_best = [], []
        for number, query in enumerate(queries):
            log(f"exact scores of every window for {query!r} ...")
            seconds, exact_scores = timed(
                lambda n=number: window_scores(runner, opened, entries, text[n : n + 1], MomentOptions(exact=True))
            )
            exact.samples.append(seconds)
            first = window_scores(runner, opened, entries, text[number : number + 1], MomentOptions(top_k=TOP))
            best_exact = set(np.argsort(-exact_scores)[:TOP].tolist())
            best_two = set(np.argsort(-np.nan_to_num(first, nan=-np.inf))[:TOP].tolist())
            agree_sets.append(len(best_exact & best_two) / TOP)
            agree_best.append(int(np.argmax(exact_scores)) == int(np.nanargmax(first)))
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
    print(f"\nagreement with --exact over {len(queries)} queries (candidates: {MomentOptions().candidates})")
    print(f"  top-{TOP} windows as a set: mean {statistics.mean(agree_sets):.1%} (per query {agree_sets})")
    print(f"  best window the same: {sum(agree_best)}/{len(agree_best)}")


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


def _float16_drift(runner: object, indexes: dict[str, Path], text: np.ndarray) -> float:
    """The largest change of a window's exact score between float16 and float32 storage."""
    scores = []
    for dtype in ("float16", "float32"):
        index = Index(indexes[dtype])
        ok = [entry for entry in index.entries if entry.status == "ok"]
        scores.append(np.stack([window_scores(runner, index, ok, text[n : n + 1], MomentOptions(exact=True))  # type: ignore[arg-type]
                                for n in range(len(text))]))  # fmt: skip
    return float(np.max(np.abs(scores[0] - scores[1])))


def _bytes_per_window(folder: Path) -> float:
    index = Index(folder)
    stored = sum(path.stat().st_size for path in folder.glob("*.npy"))
    return stored / _count(index)


def _large_index(folder: Path, runner: object, real: Index, windows: int) -> Path:
    """An index of ``windows`` windows, blends of random pairs of ``real``'s (built once)."""
    done = folder / "COMPLETE"
    if done.exists() and _count(Index(folder)) == windows:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    source = real.features([entry for entry in real.entries if entry.status == "ok"])
    log(f"writing an index of {windows:,} windows blended from {len(source)} real ones (once) ...")
    rng = np.random.default_rng(0)
    writer = IndexWriter(folder, runner, windows="8s every 4s", dtype="float16")  # type: ignore[arg-type]
    for video in range(0, windows, WINDOWS_PER_VIDEO):
        count = min(WINDOWS_PER_VIDEO, windows - video)
        a, b = rng.integers(0, len(source), count), rng.integers(0, len(source), count)
        w = rng.random(count, dtype=np.float32)
        embeds = w[:, None] * source.embeds[a] + (1 - w[:, None]) * source.embeds[b]
        embeds /= np.linalg.norm(embeds, axis=1, keepdims=True)
        patches = w[:, None, None] * source.patches[a] + (1 - w[:, None, None]) * source.patches[b]
        extents = [(4.0 * i, 4.0 * i + 8) for i in range(count)]
        result = VideoResult(
            path=f"/archive/video-{video // WINDOWS_PER_VIDEO:05d}.mp4", model="bench", duration=4.0 * count + 4
        )
        writer.add(result, VideoFeatures(embeds, patches), extents)
    writer.close()
    done.write_text("ok\n")
    return folder


def _count(index: Index) -> int:
    return sum(entry.status == "ok" for entry in index.entries)


def _open(folder: Path) -> tuple[Index, float]:
    seconds, index = timed(lambda: Index(folder))
    return index, seconds


if __name__ == "__main__":
    main()
