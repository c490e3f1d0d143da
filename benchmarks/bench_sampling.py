"""What ``--sampling keyframes`` saves and what it moves, on clips with realistic keyframe intervals.

For each synthetic 1280x720 30 fps H.264 clip (bench_classify's panning texture, moving disc
and noise): 10 s with a keyframe every 1 s, every 2 s and every 250 frames (libx264's default,
the worst case for exact frames), and 60 s with one every 2 s. In one run, per video, for both
samplings:

* decoding only: open, demux, decode the sampled frames to RGB (no preprocessing);
* decoding and preprocessing (``load_frames``, what the model is fed);
* the scan path: a stream of videos with two decode-ahead workers (``xclip scan``), beside the
  vision forward alone (the floor no decoding change can beat);
* how far keyframe sampling moves the frames: substitutes per video, mean and max distance
  from the exact frames in seconds and as a share of a segment.

Engine: ONNX Runtime (the CPU default; the checkpoint is prepared once into the work folder)
or ``--backend torch``. The full-size random checkpoint and the clips are built once in
``--workdir``. Timings are medians of ``--repeat`` runs, compared as ratios within the run;
nothing is asserted. Run: ``python benchmarks/bench_sampling.py [--repeat N] [--videos N]
[--backend onnx|torch] [--quick] [--smoke] [--workdir DIR]`` (about 6 minutes after the one-time set-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from common import FPS, Timing, add_bench_arguments, bench_session, interleaved, log, median_seconds

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import LabelSet, resolve_labels
from xclip_cli.media.decode import sample_video
from xclip_cli.media.sampling import SAMPLINGS
from xclip_cli.model.backend import Backend
from xclip_cli.model.open import open_backend
from xclip_cli.options import ClassifyOptions

# (seconds, frames per keyframe): realistic intervals beside libx264's default.
CLIPS = ((10, FPS), (10, 2 * FPS), (10, 250), (60, 2 * FPS))
WORKERS = 2  # xclip scan's default


@dataclass(frozen=True)
class Moved:
    """How far keyframe sampling moved the frames of one video from the exact ones."""

    substitutes: int
    frames: int
    mean_seconds: float
    max_seconds: float
    segment: float  # seconds per segment


def moved(clip: Path, num_frames: int) -> Moved:
    exact = sample_video(clip, num_frames, transform=lambda rgb: None)
    keyed = sample_video(clip, num_frames, transform=lambda rgb: None, sampling="keyframes")
    shifts = [abs(a - b) for a, b in zip(keyed.plan.timestamps, exact.plan.timestamps, strict=True)]
    return Moved(
        keyed.plan.substitutes, num_frames, statistics.mean(shifts), max(shifts), exact.info.duration / num_frames
    )


def measure_clip(runner: Backend, labelset: LabelSet, clip: Path, repeat: int, videos: int) -> list[str]:
    """Report lines for one clip: both samplings side by side, with their ratios."""
    text = runner.label_text_features(labelset)
    pixels = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
    forward = median_seconds(lambda: runner.video_logits(pixels, text), repeat)
    rows: dict[str, dict[str, Timing]] = {"decode only (to RGB)": {}, "decode + preprocess": {}, "scan path": {}}
    runs = []
    for sampling in SAMPLINGS:  # both samplings interleaved, round by round
        options = ClassifyOptions(sampling=sampling)
        stream = ClassifyOptions(workers=WORKERS, sampling=sampling)
        for name, per, fn in (
            ("decode only (to RGB)", 1, lambda o=options: sample_video(clip, runner.num_frames, sampling=o.sampling)),
            ("decode + preprocess", 1, lambda o=options: load_frames(runner, str(clip), o)),
            ("scan path", videos, lambda s=stream: list(classify_videos(runner, [str(clip)] * videos, labelset, s))),
        ):
            rows[name][sampling] = Timing(f"{name}, {sampling}", per=per)
            runs.append((rows[name][sampling], fn))
    interleaved(runs, repeat, warmup=False)
    lines = [f"{clip.name}"]
    for name, by_sampling in rows.items():
        exact, keyed = by_sampling["exact"], by_sampling["keyframes"]
        lines.append(
            f"  {name:<22} exact {exact.median:6.3f} s   keyframes {keyed.median:6.3f} s   "
            f"exact / keyframes {exact.median / keyed.median:5.2f}x  (min-max {exact.spread} / {keyed.spread})"
        )
    scan = {sampling: timing.median for sampling, timing in rows["scan path"].items()}
    lines.append(
        f"  {'vision forward':<22} {forward:6.3f} s ({len(labelset)} labels); scan path / forward: "
        f"exact {scan['exact'] / forward:.2f}x, keyframes {scan['keyframes'] / forward:.2f}x "
        f"({videos} videos, --workers {WORKERS})"
    )
    shift = moved(clip, runner.num_frames)
    lines.append(
        f"  {'frames moved':<22} {shift.substitutes} of {shift.frames} substitutes; distance from the exact frames "
        f"mean {shift.mean_seconds:.2f} s ({shift.mean_seconds / shift.segment:.2f} segment), "
        f"max {shift.max_seconds:.2f} s ({shift.max_seconds / shift.segment:.2f} segment); "
        f"segment {shift.segment:.2f} s"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    parser.add_argument("--videos", type=int, default=6, help="videos in each scan-path measurement")
    parser.add_argument("--backend", choices=("onnx", "torch"), default="onnx")
    args = parser.parse_args(argv)
    with bench_session(args, keep_cache=True) as bench:  # the prepared graphs are kept between runs
        model_dir = bench.checkpoint()
        clips = [bench.clip(seconds, gop=gop) for seconds, gop in CLIPS]
        runner = open_backend(str(model_dir), "cpu", "fp32", args.backend, log)
        labelset = resolve_labels("kinetics400")
        print(f"backend: {runner.backend}; {runner.num_frames} frames per video; load average {os.getloadavg()[0]:.2f}")
        for clip in clips:
            for line in measure_clip(runner, labelset, clip, bench.repeat, args.videos):
                print(line, flush=True)
        print(f"load average at the end: {os.getloadavg()[0]:.2f} (other processes inflate the timings)")


if __name__ == "__main__":
    main()
