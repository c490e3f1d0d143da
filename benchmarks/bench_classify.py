"""One video in process, model loaded: ``classify_videos`` against the transformers docs recipe.

In one run, interleaved round by round, on the 10 s 720p clip (``--long`` adds the 60 s one),
with 400 Kinetics labels:

* the recipe (``recipe.py``), split into its decode / processor / forward phases (the text
  encoder runs for all 400 labels on every call);
* ``classify_videos(runner, [path], labelset)`` with the text features cached, and its parts:
  decoding plus preprocessing (``load_frames``), the warm text-feature lookup and the vision
  forward (``runner.video_logits``);
* before the rounds, its first call with a cold text cache, and the text side's share of it.

The scan path is ``bench_scan.py``; fresh processes are ``bench_oneshot.py``. Run it with
``make bench`` or ``python benchmarks/bench_classify.py [--long] [--sliced-clips] [--repeat N]
[--quick] [--smoke] [--workdir DIR]`` (about 2 minutes for the 10 s clip and 3 rounds, plus
the one-time checkpoint and clip creation).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
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
    timed,
)

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import LabelSet, resolve_labels
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    add_clip_arguments(parser)
    return parser.parse_args(argv)


def classify_one(runner: XClipRunner, clip: Path, labelset: LabelSet) -> VideoResult:
    (result,) = classify_videos(runner, [str(clip)], labelset, ClassifyOptions())
    if not result.ok:
        raise RuntimeError(f"classify failed on {clip}: {result.error}")
    return result


def measure_first_call(runner: XClipRunner, clip: Path, labelset: LabelSet) -> list[Timing]:
    """The call that fills the text cache, and the text side's share of it."""
    text_side = Timing("ours: cold text side (once, inside the first call)")
    compute = runner.label_text_features

    def timed_text_features(labels: LabelSet) -> np.ndarray:
        seconds, features = timed(lambda: compute(labels))
        text_side.samples.append(seconds)
        return features

    runner.label_text_features = timed_text_features  # type: ignore[method-assign]
    try:
        seconds, _ = timed(lambda: classify_one(runner, clip, labelset))
    finally:
        del runner.label_text_features  # back to the method
    text_side.note = f"tokenize + encode {len(labelset)} labels + store; encoder calls: {runner.text_encoder_calls}"
    return [Timing("ours: first classify call, cold text cache (once)", [seconds], "text side + one video"), text_side]


def measure_clip(recipe: RecipeTimer, runner: XClipRunner, labelset: LabelSet, repeat: int) -> list[Timing]:
    """The recipe and our path on ``recipe.clip``, interleaved: totals first, then the parts."""
    clip = recipe.clip
    options = ClassifyOptions()
    pixel_values = view_pixels(load_frames(runner, str(clip), options))
    features = runner.label_text_features(labelset)
    ours = Timing("ours: classify_videos, per video (warm)", note="text features cached")
    frames = Timing("  ours: decode + preprocess", note="load_frames: planned seeks + Pillow resize")
    text = Timing("  ours: text features (warm)", note="tokenize + hash + memory-cache hit")
    vision = Timing("  ours: vision forward", note="runner.video_logits, cached text features")
    interleaved(
        [
            (recipe.total, recipe),
            (ours, lambda: classify_one(runner, clip, labelset)),
            (frames, lambda: load_frames(runner, str(clip), options)),
            (text, lambda: runner.label_text_features(labelset)),
            (vision, lambda: runner.video_logits(pixel_values, features)),
        ],
        repeat,
    )
    return [*recipe.rows(), ours, frames, text, vision]


def by_name(timings: Sequence[Timing]) -> dict[str, Timing]:
    return {timing.name.strip(): timing for timing in timings}


def ratios(timings: Sequence[Timing]) -> list[str]:
    named = by_name(timings)
    recipe, ours = named["recipe, per video"], named["ours: classify_videos, per video (warm)"]
    vision = named["ours: vision forward"]
    return [
        ratio_line("recipe / ours, per video", recipe, ours),
        ratio_line("ours / vision forward", ours, vision, "(1.0 = no overhead)"),
        ratio_line(
            "recipe decode / ours decode+preprocess", named["recipe: decode"], named["ours: decode + preprocess"]
        ),
        ratio_line("recipe processor+forward / ours vision forward", sum_of(named, "processor", "forward"), vision),
    ]


def sum_of(named: dict[str, Timing], *phases: str) -> Timing:
    """The recipe's phases added round by round."""
    rows = [named[f"recipe: {phase}"].samples for phase in phases]
    return Timing(" + ".join(phases), [sum(values) for values in zip(*rows, strict=True)])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    load_at_start = os.getloadavg()
    with bench_session(args) as bench:
        model_dir = bench.checkpoint()
        clips = [bench.clip(seconds, args.sliced_clips) for seconds in ([10, 60] if args.long else [10])]
        labelset = resolve_labels(LABELSET)
        log("loading the runner ...")
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
        log("first classify call (cold text cache) ...")
        cold = measure_first_call(runner, clips[0], labelset)
        log("loading the recipe's model ...")
        recipe = RecipeTimer.load(model_dir, clips[0], labelset.names)
        reports = []
        for clip in clips:
            log(f"{clip.name}: recipe and ours, {bench.repeat} interleaved round(s) after a warm-up ...")
            reports.append((clip, measure_clip(recipe.for_clip(clip), runner, labelset, bench.repeat)))

    print("\n=== xclip-cli benchmark: classify one video vs the transformers docs recipe ===")
    for line in environment(load_at_start):
        print(line)
    print(f"model: {model_dir} ({runner.num_frames} frames); labels: {LABELSET}, {len(labelset)} labels")
    print(f"medians of {bench.repeat} interleaved round(s) after a warm-up round")
    for clip, timings in reports:
        print(f"clip: {clip_facts(clip)}")
        print_table(f"== {clip.name}: per video, in process, model loaded ==", timings)
        print_ratios(ratios(timings))
    print_table("== once ==", cold)


if __name__ == "__main__":
    main()
