"""Benchmark ``xclip timeline``: compute per minute of video, peak memory, and one pass vs per window.

In one run, with the randomly initialised full-size X-CLIP of ``common.py`` and
400 Kinetics labels (warm text cache):

* the one-pass timeline against classifying each window on its own
  (``classify_videos(..., ClassifyOptions(start=s, end=e))`` per window, which re-seeks and
  re-decodes for every window) on the 60 s 720p clip, with the ratio;
* ``xclip timeline`` as a fresh process on a long clip (default 30 minutes: the 60 s clip
  stream-copied end to end, so it is built in seconds): wall seconds per minute of video and
  the process's peak resident memory (issue #5 target: under 1.5 GB).

Run it with ``python benchmarks/bench_timeline.py [--minutes N] [--smoke] [--workdir DIR]``; the 30-minute
run takes about as long as decoding 30 minutes of 720p video on this machine (several minutes).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import av
from common import LABELSET, add_bench_arguments, bench_session, log

from xclip_cli.jobs.classify import classify_videos
from xclip_cli.jobs.timeline import build_timeline, window_extents
from xclip_cli.labels import resolve_labels
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions, TimelineOptions

RSS_TARGET_GB = 1.5


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser, repeat=None)
    parser.add_argument("--minutes", type=int, default=30, help="length of the long clip (--smoke: 2)")
    return parser.parse_args(argv)


def ensure_long_clip(source: Path, minutes: int) -> Path:
    """``source`` (60 s) repeated ``minutes`` times by copying packets with shifted timestamps."""
    path = source.with_name(f"{source.stem}_x{minutes}.mp4")
    done = path.with_suffix(".mp4.COMPLETE")
    if done.exists() and path.exists():
        return path
    log(f"writing {path} ({minutes} x {source.name}, stream copy, once) ...")
    with av.open(str(source)) as first:
        span = max(p.pts + p.duration for p in first.demux(video=0) if p.pts is not None and p.duration)
    with av.open(str(path), mode="w") as output:
        stream = None
        for repeat in range(minutes):
            with av.open(str(source)) as container:
                video = container.streams.video[0]
                if stream is None:
                    stream = output.add_stream_from_template(video)
                for packet in container.demux(video):
                    if packet.size == 0:
                        continue
                    packet.pts += repeat * span
                    packet.dts += repeat * span
                    packet.stream = stream
                    output.mux(packet)
    done.write_text("ok\n")
    return path


def one_pass_vs_per_window(runner: XClipRunner, clip: Path) -> list[str]:
    labelset = resolve_labels(LABELSET)
    runner.label_text_features(labelset)  # warm
    start = time.perf_counter()
    timeline = build_timeline(runner, str(clip), labelset, TimelineOptions())
    one_pass = time.perf_counter() - start
    extents = window_extents(timeline.duration, timeline.window, timeline.stride)
    start = time.perf_counter()
    for begin, end in extents:
        list(classify_videos(runner, [str(clip)], labelset, ClassifyOptions(start=begin, end=end)))
    per_window = time.perf_counter() - start
    minutes = timeline.duration / 60
    return [
        f"clip: {clip.name}, {timeline.duration:.0f} s, {len(extents)} windows of {timeline.window:g} s "
        f"every {timeline.stride:g} s",
        f"  timeline, one pass:               {one_pass:7.2f} s  ({one_pass / minutes:.2f} s per minute of video)",
        f"  classify per window ({len(extents)} calls):  {per_window:7.2f} s",
        f"  per-window / one pass:            {per_window / one_pass:7.2f}x",
    ]


def long_clip_process(model_dir: Path, clip: Path, minutes: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="xclip-bench-timeline-") as scratch:
        out = Path(scratch) / "timeline.csv"
        command = [sys.executable, "-m", "xclip_cli", "timeline", str(clip), "--model", str(model_dir)]
        command += ["--labels", LABELSET, "-o", str(out), "--quiet"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        subprocess.run(command, check=True, env=os.environ.copy())
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        segments = len(out.read_text(encoding="utf-8").splitlines()) - 1
    peak_gb = peak_kb / 1024 / 1024
    note = "(largest child so far)" if before >= peak_kb else ""
    return [
        f"clip: {clip.name}, {minutes} min of 30 fps H.264 (size in the name)",
        f"  xclip timeline (fresh process, defaults): {seconds:7.1f} s wall, {seconds / minutes:.2f} s per minute "
        f"of video, {segments} segments",
        f"  peak RSS: {peak_gb:.2f} GB {note} (issue #5 target < {RSS_TARGET_GB} GB; weights alone ~0.8 GB)",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    minutes = 2 if args.smoke else args.minutes
    with bench_session(args) as bench:
        model_dir = bench.checkpoint()
        clip = bench.clip(60)
        long_clip = ensure_long_clip(clip, minutes)
        log("loading the runner ...")
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
        log("one pass vs per-window classify on the 60 s clip ...")
        lines = one_pass_vs_per_window(runner, clip)
        del runner
        log(f"xclip timeline on the {minutes}-minute clip (fresh process) ...")
        lines += long_clip_process(model_dir, long_clip, minutes)
    print("\n=== xclip-cli benchmark: timeline ===")
    print(f"load average at end: {os.getloadavg()[0]:.2f}; labels: {LABELSET} (400), warm text cache")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
