"""The scan path per video against the transformers docs recipe, and the floor decoding sets it.

In one run, interleaved round by round, on the 10 s 720p clip (``--long`` adds the 60 s one),
with 400 Kinetics labels and the text features cached:

* the scan path: ``classify_videos`` over 8 copies of the clip with two decode-ahead workers
  (what ``xclip scan`` and a multi-video ``xclip classify`` run), per video;
* the recipe (``recipe.py``), per video, model loaded;
* the same stream decoded and preprocessed with no model (the floor no model speed-up can
  beat) and the vision forward alone (the floor no decoding change can beat);
* on CPUs with bf16 units, the scan path and the vision forward with ``--precision bf16``;
* sequential decoding up to the last sampled frame with PyAV's default decoder threading (what
  ``xclip_cli.media.decode`` uses) and with ``AUTO``: which is faster depends on how the file
  was encoded (``--sliced-clips`` writes slice-threaded clips).

Run it with ``make bench`` or ``python benchmarks/bench_scan.py [--long] [--sliced-clips]
[--repeat N] [--quick] [--smoke] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import torch
from common import (
    LABELSET,
    RecipeTimer,
    Timing,
    add_bench_arguments,
    add_clip_arguments,
    bench_session,
    clip_facts,
    environment,
    interleaved,
    log,
    print_ratios,
    print_table,
    ratio_line,
)
from recipe import segment_centres

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import LabelSet, resolve_labels
from xclip_cli.model.device import bf16_is_fast
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions

STREAM_VIDEOS = 8  # videos per streamed run
STREAM_WORKERS = 2  # the CLI default


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    add_clip_arguments(parser)
    return parser.parse_args(argv)


def stream(runner: XClipRunner, clip: Path, labelset: LabelSet) -> None:
    """``STREAM_VIDEOS`` copies of ``clip`` through the scan path."""
    options = ClassifyOptions(workers=STREAM_WORKERS)
    results = list(classify_videos(runner, [str(clip)] * STREAM_VIDEOS, labelset, options))
    if not all(result.ok for result in results):
        raise RuntimeError(f"classify failed on {clip}")


def decode_stream(runner: XClipRunner, clip: Path) -> None:
    """Decode + preprocess of the same stream with the scan's workers and no model."""
    with ThreadPoolExecutor(STREAM_WORKERS) as pool:
        list(pool.map(lambda path: load_frames(runner, path, ClassifyOptions()), [str(clip)] * STREAM_VIDEOS))


def decode_up_to(clip: Path, last: int, thread_type: str | None) -> None:
    """Decode frames 0..last (no conversion), with PyAV's default threading or ``thread_type``."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        if thread_type is not None:
            stream.thread_type = thread_type
        for index, _frame in enumerate(container.decode(stream)):
            if index >= last:
                break


def scan_runs(runner: XClipRunner, clip: Path, labelset: LabelSet) -> list[tuple[Timing, Callable[[], Any]]]:
    """The scan path and its vision forward, named by the runner's precision."""
    suffix = "" if runner.precision == "fp32" else f", --precision {runner.precision}"
    features = runner.label_text_features(labelset)  # warm
    pixel_values = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
    notes = f"{STREAM_VIDEOS} videos, --workers {STREAM_WORKERS}; total / {STREAM_VIDEOS}"
    scan = Timing(f"scan path, per video{suffix}", note=notes, per=STREAM_VIDEOS)
    vision = Timing(f"  vision forward{suffix}", note="runner.video_logits, cached text features")
    return [
        (scan, lambda: stream(runner, clip, labelset)),
        (vision, lambda: runner.video_logits(pixel_values, features)),
    ]


def decoder_runs(clip: Path, num_frames: int) -> list[tuple[Timing, Callable[[], Any]]]:
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        last = segment_centres(video.frames, num_frames)[-1]
        default = str(video.codec_context.thread_type.name)
    runs: list[tuple[Timing, Callable[[], Any]]] = []
    for name, kind in ((f"PyAV default ({default})", None), ("AUTO (frame threads)", "AUTO")):
        timing = Timing(f"  decode frames 0..{last}, threads {name}", note="no rgb conversion")
        runs.append((timing, lambda kind=kind: decode_up_to(clip, last, kind)))
    return runs


def measure_clip(
    recipe: RecipeTimer, runner: XClipRunner, labelset: LabelSet, repeat: int, bf16: XClipRunner | None = None
) -> list[Timing]:
    clip = recipe.clip
    floor = Timing(
        "  decode + preprocess only, stream (floor)",
        note=f"{STREAM_VIDEOS} videos on {STREAM_WORKERS} threads, no model; total / {STREAM_VIDEOS}",
        per=STREAM_VIDEOS,
    )
    runs: list[tuple[Timing, Callable[[], Any]]] = [(recipe.total, recipe), *scan_runs(runner, clip, labelset)]
    runs.append((floor, lambda: decode_stream(runner, clip)))
    if bf16 is not None:
        runs += scan_runs(bf16, clip, labelset)
    runs += decoder_runs(clip, runner.num_frames)
    interleaved(runs, repeat)
    return [timing for timing, _ in runs]


def ratios(timings: Sequence[Timing]) -> list[str]:
    named = {timing.name.strip(): timing for timing in timings}
    scan, recipe = named["scan path, per video"], named["recipe, per video"]
    vision, floor = named["vision forward"], named["decode + preprocess only, stream (floor)"]
    lines = [
        ratio_line("recipe / scan path", recipe, scan, "(issue #3 target >= 10x)"),
        ratio_line("scan path / vision forward", scan, vision, "(issue #3 target <= 1.3x)"),
        ratio_line("scan path / its decode floor", scan, floor),
    ]
    bf16 = named.get("scan path, per video, --precision bf16")
    if bf16 is not None:
        lines.append(ratio_line("recipe / scan path, --precision bf16", recipe, bf16, "(lossy, opt-in)"))
        lines.append(
            ratio_line("scan path bf16 / bf16 vision forward", bf16, named["vision forward, --precision bf16"])
        )
    default, auto = (t for t in timings if t.name.strip().startswith("decode frames"))
    lines.append(ratio_line("decoding: PyAV default threads / AUTO", default, auto, "(< 1: AUTO is slower here)"))
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    load_at_start = os.getloadavg()
    with bench_session(args) as bench:
        model_dir = bench.checkpoint()
        clips = [bench.clip(seconds, args.sliced_clips) for seconds in ([10, 60] if args.long else [10])]
        labelset = resolve_labels(LABELSET)
        log("loading the runner and the recipe's model ...")
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
        bf16 = None
        if bf16_is_fast(torch.device("cpu")):
            bf16 = XClipRunner.from_pretrained(str(model_dir), device="cpu", precision="bf16")
        recipe = RecipeTimer.load(model_dir, clips[0], labelset.names)
        reports = []
        for clip in clips:
            log(f"{clip.name}: scan path, recipe and floors, {bench.repeat} round(s) after a warm-up ...")
            reports.append((clip, measure_clip(recipe.for_clip(clip), runner, labelset, bench.repeat, bf16)))

    print("\n=== xclip-cli benchmark: the scan path vs the transformers docs recipe ===")
    for line in environment(load_at_start):
        print(line)
    print(f"model: {model_dir} ({runner.num_frames} frames); labels: {LABELSET}, {len(labelset)} labels")
    print(f"medians of {bench.repeat} interleaved round(s) after a warm-up round; bf16 measured: {bf16 is not None}")
    for clip, timings in reports:
        print(f"clip: {clip_facts(clip)}")
        print_table(f"== {clip.name}: per video, in process, model loaded ==", timings)
        print_ratios(ratios(timings))


if __name__ == "__main__":
    main()
