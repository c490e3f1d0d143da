"""ONNX Runtime against torch eager on one machine, in one run: prepare cost, vision side, scan path.

Full-size random X-CLIP (base-patch32 shape), a synthetic 10 s 720p clip, 400 Kinetics labels,
warm text cache. Prints medians and ratios (torch / onnx: above 1 means ONNX Runtime is faster),
and the logit drift between the two on the same frames; then the same for ``--precision int8``
(int8 vision weights), with top-1/top-5 agreement with fp32 over 12 views of the clip.

Then the vision graph alone with ONNX Runtime's thread settings and several videos per call.

    python benchmarks/bench_onnx.py [--repeat 3] [--videos 6] [--load-only] [--quick] [--smoke] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from common import Timing, add_bench_arguments, bench_session, interleaved, log, median_seconds

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import resolve_labels
from xclip_cli.model.onnx.export import prepare
from xclip_cli.model.onnx.runner import FEW_VIDEOS, OnnxRunner, session_options
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions


def compare(runner: XClipRunner, onnx: OnnxRunner, clip: Path, videos: int, repeat: int) -> list[str]:
    """Lines of the report: vision side, whole forward, scan path, drift."""
    labelset = resolve_labels("kinetics400")
    text = runner.label_text_features(labelset)  # warm: both backends read the same cache
    pixels = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
    lines = []
    for name, fn_torch, fn_onnx in (
        ("vision side per video", lambda: runner.video_features(pixels), lambda: onnx.video_features(pixels)),
        ("forward with 400 labels", lambda: runner.video_logits(pixels, text), lambda: onnx.video_logits(pixels, text)),
    ):
        torch_side, onnx_side = Timing("torch"), Timing("onnx")
        interleaved([(torch_side, fn_torch), (onnx_side, fn_onnx)], repeat)  # the warm-up round allocates
        lines.append(
            f"{name:<34} torch {torch_side.median:7.3f} s   onnx {onnx_side.median:7.3f} s   "
            f"torch/onnx {torch_side.median / onnx_side.median:5.2f}x  (min-max torch {torch_side.spread}, "
            f"onnx {onnx_side.spread})"
        )
    paths = [str(clip)] * videos
    options = ClassifyOptions(workers=2)
    for engine, backend in (("torch", runner), ("onnx", onnx)):
        started = time.perf_counter()
        list(classify_videos(backend, paths, labelset, options))
        lines.append(
            f"scan path, {engine:<5} {videos} videos: {(time.perf_counter() - started) / videos:7.3f} s per video"
        )
    on_torch, on_onnx = runner.video_logits(pixels, text), onnx.video_logits(pixels, text)
    drift = np.abs(on_torch - on_onnx)
    lines.append(f"logit drift onnx vs torch: max {drift.max():.2e}, mean {drift.mean():.2e}")
    exact = float64_logits(runner, pixels, text)
    for engine, logits in (("torch", on_torch), ("onnx", on_onnx)):
        error = np.abs(logits - exact)
        lines.append(
            f"fp32 error, {engine:<5} vs transformers in float64: max {error.max():.2e}, mean {error.mean():.2e}"
        )
    return lines


def float64_logits(runner: XClipRunner, pixels: np.ndarray, text: np.ndarray) -> np.ndarray:
    """The same modules and weights in float64 (features rounded to fp32 between the vision side
    and the head, as both engines hand them over): the answer both fp32 engines approximate."""
    exact = dataclasses.replace(runner, model=copy.deepcopy(runner.model).double())
    with torch.inference_mode():
        embeds, patches = exact.vision_side(torch.from_numpy(pixels).double())
        logits = exact.head(embeds, patches, torch.from_numpy(text).double())
    return logits.double().numpy()


def session_load(folder: Path, model_id: str, pixels: np.ndarray, repeat: int, int8: bool = False) -> list[str]:
    """Opening the graphs as a run does (``OnnxRunner.open``: head and vision), for a run of many
    videos (weights prepacked) and of a few (``FEW_VIDEOS``: not), interleaved, and the vision
    graph's time per video in each: what a one-shot run saves, what a long one would pay per
    video without prepacking, and the count where the two break even."""
    kinds = {"prepacked": None, f"a few videos (<= {FEW_VIDEOS})": 1}
    loads = {kind: Timing(kind) for kind in kinds}
    runs = {kind: Timing(kind) for kind in kinds}
    opened: dict[str, OnnxRunner] = {}

    def open_and_keep(kind: str) -> None:
        opened[kind] = OnnxRunner.open(folder, model_id, int8=int8, videos=kinds[kind])

    def run(kind: str) -> None:
        opened[kind].video_features(pixels)

    interleaved([(loads[kind], lambda k=kind: open_and_keep(k)) for kind in kinds], repeat)
    interleaved([(runs[kind], lambda k=kind: run(k)) for kind in kinds], repeat)
    (many, few) = kinds
    saved = loads[many].median - loads[few].median
    extra = runs[few].median - runs[many].median
    even = f"{saved / extra:.0f} videos" if extra > 0 else "never (no slower per video)"
    precision = "int8" if int8 else "fp32"
    return [
        f"session load ({precision}, head + vision, as a run opens them): prepacked {loads[many].median:.3f} s "
        f"({loads[many].spread}); for {few} {loads[few].median:.3f} s ({loads[few].spread}), "
        f"{loads[many].median / loads[few].median:.1f}x less",
        f"vision graph per video ({precision}): prepacked {runs[many].median:.3f} s ({runs[many].spread}), "
        f"not {runs[few].median:.3f} s ({runs[few].spread}, {runs[few].median / runs[many].median:.2f}x); "
        f"prepacking pays after {even}",
    ]


def session_settings(folder: Path, pixels: np.ndarray, repeat: int) -> list[str]:
    """The vision graph per video with ORT's intra-op threads (1, 2, default) and 1 or 4 videos
    per session call: what batching and thread settings give on this machine."""
    import onnxruntime

    lines = []
    for threads in (1, 2, 0):  # 0: ORT's default (one per physical core)
        options = session_options(threads)  # the engine's, these threads
        session = onnxruntime.InferenceSession(str(folder / "vision.onnx"), options, providers=["CPUExecutionProvider"])
        for batch in (1, 4):
            inputs = {"pixel_values": np.ascontiguousarray(np.repeat(pixels[:1], batch, axis=0))}
            session.run(None, inputs)  # first call allocates
            seconds = median_seconds(lambda: session.run(None, inputs), repeat) / batch  # noqa: B023
            name = f"{threads} threads" if threads else "default threads"
            lines.append(f"vision graph, {name:<15}, {batch} video(s) per call: {seconds:7.3f} s per video")
    return lines


def compare_int8(onnx: OnnxRunner, int8: OnnxRunner, clip: Path, repeat: int) -> list[str]:
    """int8 against fp32 ONNX Runtime: vision side speed, logit drift, ranking agreement."""
    labelset = resolve_labels("kinetics400")
    text = onnx.label_text_features(labelset)
    views = view_pixels(load_frames(onnx, str(clip), ClassifyOptions(clips=4, crops=3)))  # 12 inputs
    one = views[:1]
    fp32_side, int8_side = Timing("fp32"), Timing("int8")
    interleaved([(fp32_side, lambda: onnx.video_features(one)), (int8_side, lambda: int8.video_features(one))], repeat)
    a, b = fp32_side.median, int8_side.median
    exact, lossy = onnx.video_logits(views, text), int8.video_logits(views, text)
    drift = np.abs(exact - lossy)
    top1 = (exact.argmax(-1) == lossy.argmax(-1)).mean()
    top5 = np.mean([set(np.argsort(-e)[:5]) == set(np.argsort(-q)[:5]) for e, q in zip(exact, lossy, strict=True)])
    return [
        f"{'int8 vision side per video':<34} fp32 {a:7.3f} s   int8 {b:7.3f} s   fp32/int8 {a / b:5.2f}x",
        f"int8 logit drift vs fp32 ({len(views)} views): max {drift.max():.2f}, mean {drift.mean():.3f}; "
        f"same top-1 {top1:.0%}, same top-5 set {top5:.0%}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    parser.add_argument("--videos", type=int, default=6, help="videos in the scan-path measurement")
    parser.add_argument("--load-only", action="store_true", help="only the session loads (fp32 and int8)")
    args = parser.parse_args(argv)
    with bench_session(args) as bench:
        model_dir, clip = bench.checkpoint(), bench.clip(10)
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
        log("exporting the ONNX graphs (into the run's scratch cache) ...")
        started = time.perf_counter()
        folder = prepare(runner)
        export = time.perf_counter() - started
        size = sum(item.stat().st_size for item in folder.iterdir()) / 1e6
        started = time.perf_counter()
        onnx = OnnxRunner.open(folder, runner.model_id)
        load = time.perf_counter() - started
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {clip.name}")
        print(f"prepare: {export:.1f} s, {size:.0f} MB on disk; session load {load:.2f} s")
        pixels = view_pixels(load_frames(onnx, str(clip), ClassifyOptions()))
        if args.load_only:
            int8_folder = prepare(runner, int8=True)
            for line in session_load(folder, runner.model_id, pixels, bench.repeat):
                print(line)
            for line in session_load(int8_folder, runner.model_id, pixels, bench.repeat, int8=True):
                print(line)
            return
        for line in compare(runner, onnx, clip, args.videos, bench.repeat):
            print(line)
        for line in session_load(folder, runner.model_id, pixels, bench.repeat):
            print(line)
        for line in session_settings(folder, pixels, bench.repeat):
            print(line)
        int8 = OnnxRunner.open(prepare(runner, int8=True), runner.model_id, int8=True)
        for line in compare_int8(onnx, int8, clip, bench.repeat):
            print(line)


if __name__ == "__main__":
    main()
