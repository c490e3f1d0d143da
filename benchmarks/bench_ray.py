"""Benchmark ``xclip scan --engine ray`` against the local engine on this one machine.

In one run, with the randomly initialised full-size X-CLIP of ``common.py``, 400
Kinetics labels (warm text cache) and N copies of the 10 s 720p clip:

* the local engine as ``xclip scan`` runs it (model loaded in process, two decode-ahead
  threads), from loading the model to the last result;
* the Ray engine on a local Ray instance with this machine's CPUs (one model actor; decoding
  tasks on the other CPUs), from ``classify_videos_on_ray`` to the last result, and Ray's own
  start-up measured apart;
* per video in the steady state (first result to last), and the ratios Ray / local;
* agreement: the same top-1 label for every video and the largest probability difference;
* ``--nodes``: videos per second on ONNX Runtime, the local engine against Ray clusters of 1, 2
  and 3 nodes started on this machine (``ray.cluster_utils.Cluster``, 2 CPUs and one model
  actor per node, two decoders per CPU). The nodes share this machine's cores, so more nodes
  add Ray's processes, not computing power: the numbers show what Ray's scheduling and
  shipping cost, not how a cluster of real machines scales.

Run it with ``python benchmarks/bench_ray.py [--videos N] [--nodes] [--smoke] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common import LABELSET, add_bench_arguments, bench_session, log

from xclip_cli.jobs.classify import classify_videos
from xclip_cli.labels import LabelSet, resolve_labels
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import VideoResult
from xclip_cli.run.ray import RayOptions, classify_videos_on_ray

SCAN_WORKERS = 2  # `xclip scan`'s default
# The defaults (one CPU per decoding task and per model actor), and more decoders than CPUs.
RAY_SETTINGS = (RayOptions(backend="torch"), RayOptions(decode_cpus=0.5, cpus_per_actor=0.5, backend="torch"))


@dataclass(frozen=True)
class EngineRun:
    """One engine over the same videos: wall time to the last result, and when results came."""

    name: str
    total: float  # seconds from the call (model loading included) to the last result
    first: float  # seconds to the first result
    results: tuple[VideoResult, ...]

    @property
    def steady_per_video(self) -> float:
        """Seconds per video after the first result: start-up excluded."""
        return (self.total - self.first) / max(1, len(self.results) - 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser, repeat=None)
    parser.add_argument("--videos", type=int, default=16, help="copies of the 10 s clip to scan")
    parser.add_argument("--nodes", action="store_true", help="also Ray clusters of 1, 2 and 3 nodes, on ONNX Runtime")
    return parser.parse_args(argv)


def video_folder(clip: Path, count: int, folder: Path) -> list[str]:
    """``count`` hard links to ``clip``: distinct paths, the same bytes (warm page cache for both)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"video-{index:04d}{clip.suffix}"
        if not path.exists():
            os.link(clip, path)
        paths.append(str(path))
    return paths


def collect(name: str, started: float, results: Iterable[VideoResult]) -> EngineRun:
    """Drain ``results``, noting when the first and the last arrive (from ``started``)."""
    collected: list[VideoResult] = []
    first = float("nan")
    for result in results:
        if not collected:
            first = time.perf_counter() - started
        collected.append(result)
    return EngineRun(name, time.perf_counter() - started, first, tuple(collected))


def run_local(model_dir: Path, paths: list[str], labelset: LabelSet) -> EngineRun:
    started = time.perf_counter()
    runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
    options = ClassifyOptions(workers=SCAN_WORKERS)
    return collect("local engine (xclip scan)", started, classify_videos(runner, paths, labelset, options))


def run_ray(model_dir: Path, paths: list[str], labelset: LabelSet, options: RayOptions) -> EngineRun:
    started = time.perf_counter()
    results = classify_videos_on_ray(str(model_dir), paths, labelset, None, options)
    name = f"Ray, --decode-cpus {options.decode_cpus:g} --cpus-per-actor {options.cpus_per_actor:g}"
    return collect(name, started, results)


def run_local_onnx(model_dir: Path, paths: list[str], labelset: LabelSet) -> EngineRun:
    from xclip_cli.model.open import open_backend

    started = time.perf_counter()
    runner = open_backend(str(model_dir), "cpu", "fp32", "onnx")
    options = ClassifyOptions(workers=SCAN_WORKERS)
    return collect("local engine, ONNX Runtime", started, classify_videos(runner, paths, labelset, options))


def run_cluster(model_dir: Path, paths: list[str], labelset: LabelSet, nodes: int) -> EngineRun:
    """A Ray cluster of ``nodes`` nodes on this machine, started apart; from the scan's call to
    its last result (the cluster's own start-up not counted)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=2)
        options = RayOptions(address=cluster.address, concurrency=nodes, decode_cpus=0.5)
        started = time.perf_counter()
        results = classify_videos_on_ray(str(model_dir), paths, labelset, None, options)
        return collect(f"Ray, {nodes}-node cluster, {nodes} actor(s)", started, results)
    finally:
        ray.shutdown()
        cluster.shutdown()


def throughput(local_run: EngineRun, cluster_runs: Sequence[EngineRun]) -> list[str]:
    """Videos per second (start-up included, and steady), and what Ray adds per video."""
    lines = [f"{'ONNX Runtime':<44} {'videos/s':>9} {'steady':>8} {'Ray adds per video':>19}"]
    for run in (local_run, *cluster_runs):
        rate, steady = len(run.results) / run.total, 1 / run.steady_per_video
        added = "" if run is local_run else f"{run.steady_per_video - local_run.steady_per_video:+17.3f} s"
        lines.append(f"{run.name:<44} {rate:>9.2f} {steady:>8.2f} {added:>19}")
    return lines


def start_ray() -> float:
    """Start a local Ray instance (all of this machine's CPUs); seconds it took."""
    import logging

    import ray

    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return time.perf_counter() - started


def agreement(ray_run: EngineRun, local_run: EngineRun) -> str:
    mine = {result.path: result for result in ray_run.results}
    same_top1 = sum(
        mine[result.path].predictions[0].label == result.predictions[0].label for result in local_run.results
    )
    difference = max(
        abs(a.probability - b.probability)
        for result in local_run.results
        for a, b in zip(mine[result.path].predictions, result.predictions, strict=True)
    )
    return f"same top-1 for {same_top1}/{len(local_run.results)} videos, probabilities differ by <= {difference:.1e}"


def report(local_run: EngineRun, ray_runs: Sequence[EngineRun], ray_start: float) -> list[str]:
    """The comparison as printable lines (also what the test checks)."""
    videos = len(local_run.results)
    lines = [f"{'':<44} {'to last result':>15} {'to first':>9} {'per video, steady':>18}"]
    for run in (local_run, *ray_runs):
        lines.append(f"{run.name:<44} {run.total:>13.2f} s {run.first:>7.2f} s {run.steady_per_video:>16.3f} s")
    lines.append(f"{'Ray start-up (ray.init, apart)':<44} {ray_start:>13.2f} s")
    for run in ray_runs:
        total_ratio = (run.total + ray_start) / local_run.total
        steady_ratio = run.steady_per_video / local_run.steady_per_video
        lines.append(f"{run.name}: Ray / local {total_ratio:.2f}x for {videos} videos with Ray's start-up, ")
        lines[-1] += f"{steady_ratio:.2f}x per video in the steady state; " + agreement(run, local_run)
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with bench_session(args) as bench:
        model_dir = bench.checkpoint()
        clip = bench.clip(10)
        paths = video_folder(clip, args.videos, bench.workdir / f"ray-videos-{clip.stem}")
        labelset = resolve_labels(LABELSET)
        log("warming the text cache ...")
        XClipRunner.from_pretrained(str(model_dir), device="cpu").label_text_features(labelset)
        log(f"local engine over {len(paths)} videos ...")
        local_run = run_local(model_dir, paths, labelset)
        log("starting Ray ...")
        ray_start = start_ray()
        ray_runs = []
        for options in RAY_SETTINGS:
            log(f"Ray engine over {len(paths)} videos, {options.decode_cpus:g} CPU per decoder ...")
            ray_runs.append(run_ray(model_dir, paths, labelset, options))
        cluster_lines = []
        if args.nodes:
            import ray

            ray.shutdown()
            log("preparing for ONNX Runtime, then the local engine on it and clusters of 1, 2 and 3 nodes ...")
            from xclip_cli.model.open import open_backend

            open_backend(str(model_dir), "cpu", "fp32", "onnx")  # prepared once, before any timing
            local_onnx = run_local_onnx(model_dir, paths, labelset)
            clusters = [run_cluster(model_dir, paths, labelset, nodes) for nodes in (1, 2, 3)]
            cluster_lines = throughput(local_onnx, clusters)
        print(f"\n{len(paths)} x {clip.name}, {os.cpu_count()} CPUs, {len(labelset)} labels")
        print("\n".join(report(local_run, ray_runs, ray_start)))
        print("\n".join(cluster_lines))


if __name__ == "__main__":
    main()
