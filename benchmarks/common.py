"""What the benchmarks share: the checkpoint, the clips, the recipe, interleaved timing and the report.

Each script measures one thing, on CPU, against the transformers documentation recipe
(``recipe.py``) or against another path of ours, in the same run, interleaved round by round
so that load from other processes hits every side alike. They print medians with their
min-max spread and ratios (median of the per-round ratios, with their range); none asserts a
timing. The model is a randomly initialised full-size X-CLIP (``XCLIPModel(XCLIPConfig())``:
base-patch32 shape, 8 frames, 224 px) with the real CLIP tokenizer files of
``tests/data/clip_tokenizer``; clips are synthetic 1280x720 30 fps H.264 written with PyAV;
labels are the 400 of Kinetics. Both are built once in ``--workdir`` and reused.

* ``bench_classify.py`` (``make bench``): one video, in process, model loaded: the recipe
  (decode / processor / forward) against ``classify_videos`` (decode + preprocess, warm text
  lookup, vision forward) and its first call with a cold text cache.
* ``bench_scan.py`` (``make bench``): the scan path (a stream of videos with decode-ahead
  workers) per video against the recipe, the same stream decoded with no model (its floor),
  the vision forward, ``--precision bf16`` where the CPU has bf16 units, and PyAV's decoder
  threading.
* ``bench_oneshot.py``: one-shot processes as a user runs them: ``xclip classify`` on ONNX
  Runtime and on torch against the recipe as a fresh script and the imports alone, with peak
  memory; ``xclip models prepare`` once.
* ``bench_serve.py``: ``xclip classify --server`` against a running ``xclip serve``, against the
  recipe script and a one-shot ``xclip classify``.
* ``bench_onnx.py``: ONNX Runtime against torch eager in process (vision side, forward, scan
  path, drift against float64), session load with and without weight prepacking, ORT thread
  settings, int8.
* ``bench_limit.py``: the vision side in GFLOP/s against this machine's fp32 GEMM probe (torch,
  ONNX Runtime fp32 and int8, interleaved), and ONNX Runtime's profile of where the time goes.
* ``bench_sampling.py``: ``--sampling keyframes`` against exact frames on realistic keyframe
  intervals: decoding, the scan path, how far the frames move.
* ``bench_timeline.py``: one-pass timeline against classifying each window; a long clip's
  seconds per minute and peak memory.
* ``bench_index.py``: scoring an embedding index per 1,000 videos against decoding them.
* ``bench_precision.py``: fp32 against bf16: speed and logit drift.
* ``bench_ray.py``: ``--engine ray`` against the local engine on this machine.
* ``bench_watch.py``: ``scan --watch``, from a file being complete to its row.

Every script takes ``--smoke``: a tiny random checkpoint and small clips, one round, so that it
runs end to end in seconds (numbers meaningless; ``tests/test_benchmarks.py`` runs them so).
Whether a result is equal to the recipe's is checked by ``tests/test_recipe_agreement.py``,
not here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
TOKENIZER_DIR = REPO / "tests" / "data" / "clip_tokenizer"
RECIPE_SCRIPT = BENCHMARKS / "recipe.py"
DEFAULT_WORKDIR = Path.home() / ".cache" / "xclip-cli-bench"
MARKER = "COMPLETE"  # written last, so an interrupted save is rebuilt
LABELSET = "kinetics400"
IMAGE_MEAN = [0.485, 0.456, 0.406]
IMAGE_STD = [0.229, 0.224, 0.225]
FPS = 30
FULL_SIZE = (1280, 720)  # clip width, height
SMOKE_SIZE = (160, 90)


# --- set-up --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """One benchmark run's settings: where things are built, full size or smoke, rounds."""

    workdir: Path
    repeat: int
    smoke: bool = False

    def checkpoint(self) -> Path:
        return ensure_checkpoint(self.workdir, smoke=self.smoke)

    def clip(self, seconds: int, sliced: bool = False, gop: int | None = None) -> Path:
        size = SMOKE_SIZE if self.smoke else FULL_SIZE
        return ensure_clip(self.workdir, seconds, sliced=sliced, gop=gop, size=size)


def add_bench_arguments(parser: argparse.ArgumentParser, repeat: int | None = 3) -> None:
    """``--workdir``, ``--repeat``, ``--quick`` and ``--smoke``, the same in every script
    (``repeat=None``: a script of one-off runs, without ``--repeat`` and ``--quick``)."""
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="checkpoint and clips (reused)")
    if repeat is not None:
        parser.add_argument("--repeat", type=int, default=repeat, help="interleaved rounds; medians are reported")
        parser.add_argument("--quick", action="store_true", help="one round (noisier)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny random checkpoint, small clips, one round: plumbing only"
    )


def add_clip_arguments(parser: argparse.ArgumentParser) -> None:
    """``--long`` and ``--sliced-clips``, for the scripts that measure one clip's path."""
    parser.add_argument("--long", action="store_true", help="also measure a 60 s clip")
    parser.add_argument(
        "--sliced-clips",
        action="store_true",
        help="encode the clips with x264 slice threads (PyAV's default) instead of frame threads",
    )


@contextmanager
def bench_session(args: argparse.Namespace, keep_cache: bool = False) -> Iterator[Bench]:
    """Quiet transformers, the reused work folder, and the run's ``XCLIP_CACHE_DIR``.

    The cache is a scratch folder (the user's is untouched and every run starts with a cold
    text cache), or with ``keep_cache`` ``WORKDIR/cache``, so that ONNX graphs prepared by one
    run serve the next. It is set before any text feature is computed or stored.
    """
    quiet_transformers()
    workdir = args.workdir.expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    repeat = 1 if getattr(args, "quick", False) or args.smoke else max(1, getattr(args, "repeat", 1))
    bench = Bench(workdir=workdir, repeat=repeat, smoke=args.smoke)
    if keep_cache:
        os.environ["XCLIP_CACHE_DIR"] = str(workdir / "cache")
        yield bench
        return
    with tempfile.TemporaryDirectory(prefix="xclip-bench-cache-") as cache:
        os.environ["XCLIP_CACHE_DIR"] = cache
        yield bench


def quiet_transformers() -> None:
    """No progress bars or load reports from transformers in the benchmark's own process."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def ensure_checkpoint(workdir: Path, smoke: bool = False) -> Path:
    """A random full-size X-CLIP with the hub checkpoint's processor settings, saved once;
    with ``smoke``, the tests' tiny one (``tests/helpers.py``)."""
    folder = workdir / ("xclip-random-tiny" if smoke else "xclip-random-base-patch32")
    if (folder / MARKER).exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if smoke:
        sys.path.insert(0, str(REPO / "tests"))
        from helpers import save_tiny_checkpoint

        save_tiny_checkpoint(folder)
        (folder / MARKER).write_text("tests/helpers.py save_tiny_checkpoint\n")
        return folder
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    log(f"building and saving a random XCLIPModel(XCLIPConfig()) to {folder} (once) ...")
    torch.manual_seed(0)
    XCLIPModel(XCLIPConfig()).eval().save_pretrained(folder)
    tokenizer = CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))
    image_processor = VideoMAEImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
    )
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    (folder / MARKER).write_text("XCLIPModel(XCLIPConfig()), torch.manual_seed(0)\n")
    return folder


def ensure_clip(
    workdir: Path, seconds: int, sliced: bool = False, gop: int | None = None, size: tuple[int, int] = FULL_SIZE
) -> Path:
    """A synthetic H.264 clip with motion and noise, written once (``gop``: frames per keyframe)."""
    threads = "sliced" if sliced else "frame"
    keyint = "" if gop is None else f"_g{gop}"
    width, height = size
    path = workdir / f"synthetic_{width}x{height}_{FPS}fps_{seconds}s_{threads}{keyint}.mp4"
    done = path.with_suffix(".mp4." + MARKER)
    if done.exists() and path.exists():
        return path
    log(f"writing {path} (once) ...")
    write_synthetic_clip(path, seconds, sliced, gop=gop, size=size)
    done.write_text("ok\n")
    return path


def write_synthetic_clip(
    path: Path, seconds: int, sliced: bool, seed: int = 0, gop: int | None = None, size: tuple[int, int] = FULL_SIZE
) -> None:
    """Panning blocky texture, a moving disc and per-frame noise; libx264 defaults (keyint 250)
    unless ``gop`` sets the keyframe interval (phones and broadcast: 0.5-2 s).

    Encoder threading decides how the file can be decoded in parallel: frame threads
    (``sliced_threads=0``, what the ffmpeg command line writes) or, with ``sliced``, slice
    threads (PyAV's default encoder setting), whose frames decode in parallel slices.
    """
    width, height = size
    scale = width / FULL_SIZE[0]  # motion and disc scale with the picture
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 16 + 2, (width + 8 * FPS * seconds) // 16 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)  # wider than a frame, to pan over
    ys, xs = np.mgrid[0:height, 0:width]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.codec_context.thread_type = "SLICE" if sliced else "FRAME"
        if gop is not None:
            stream.options = {"g": str(gop)}
        for index in range(FPS * seconds):
            offset = 8 * index  # pan 8 px per frame
            image = texture[:height, offset : offset + width].astype(np.int16)
            cx = width / 2 + 400 * scale * np.sin(index / 20)
            cy = height / 2 + 200 * scale * np.cos(index / 15)
            image[(xs - cx) ** 2 + (ys - cy) ** 2 < (80 * scale) ** 2] = (255, 220, 40)
            image += rng.integers(-12, 13, size=image.shape, dtype=np.int16)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def clip_facts(path: Path) -> str:
    """Frames, keyframes, size and x264 threading of a clip, from a demux pass."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        keyframes = sum(p.is_keyframe for p in packets)
        width, height, codec = stream.width, stream.height, stream.codec_context.name
    with path.open("rb") as handle:
        sliced = re.search(rb"sliced_threads=(\d)", handle.read(4_000_000))
    encoder = f"x264 sliced_threads={sliced.group(1).decode()}" if sliced else "encoder settings unknown"
    return (
        f"{path.name}: {width}x{height}, {len(packets)} frames, {keyframes} keyframes, {codec}, "
        f"{path.stat().st_size / 1e6:.1f} MB, {encoder}"
    )


def write_labels_file(bench: Bench, labels: Sequence[str]) -> Path:
    """The label names one per line, for the recipe run as a fresh script."""
    path = bench.workdir / f"{LABELSET}_labels.txt"
    path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    return path


# --- the machine ---------------------------------------------------------------------------


def environment(load_at_start: tuple[float, float, float]) -> list[str]:
    """Versions, CPU, threads, bf16 units and load: what the numbers depend on."""
    import torch
    import transformers

    from xclip_cli.model.device import bf16_is_fast

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"av {av.__version__}",
        f"torch.get_num_threads() = {torch.get_num_threads()}, os.cpu_count() = {os.cpu_count()}",
        f"CPU: {cpu}; capability {torch.backends.cpu.get_cpu_capability()}, "
        f"bf16 units: {bf16_is_fast(torch.device('cpu'))}",
        f"load average (1/5/15 min) at start: {format_load(load_at_start)}; at end: {format_load(os.getloadavg())}"
        " (other processes on the machine inflate the timings)",
    ]


def format_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in load)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- timing --------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall-clock samples of one measured operation, one per round."""

    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""
    per: int = 1  # the samples are divided by this (videos in a streamed run)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> str:
        if len(self.samples) < 2:
            return "-"
        return f"{min(self.samples):.3f}-{max(self.samples):.3f}"


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def interleaved(runs: Sequence[tuple[Timing, Callable[[], Any]]], repeat: int, warmup: bool = True) -> None:
    """Run every operation once per round, ``repeat`` rounds, appending each one's seconds
    (divided by its ``per``) to its timing. Interleaving spreads load drift over all sides; a
    first, unrecorded round (``warmup``) pays one-time allocations and file-cache misses."""
    for round_index in range(repeat + (1 if warmup else 0)):
        for timing, fn in runs:
            seconds, _ = timed(fn)
            if round_index > 0 or not warmup:
                timing.samples.append(seconds / timing.per)


class RecipeTimer:
    """The recipe in process with the model loaded, as a callable for :func:`interleaved` that
    also records the time of each phase."""

    def __init__(self, model: Any, processor: Any, clip: Path, labels: list[str]) -> None:
        from recipe import PHASES

        self.model, self.processor, self.clip, self.labels = model, processor, clip, labels
        self.total = Timing("recipe, per video", note="transformers docs recipe, model loaded")
        self.phases = {phase: Timing(f"  recipe: {phase}", note=note) for phase, note in PHASES.items()}

    @classmethod
    def load(cls, model_dir: Path, clip: Path, labels: list[str]) -> RecipeTimer:
        from recipe import load_recipe

        return cls(*load_recipe(model_dir), clip, labels)

    def for_clip(self, clip: Path) -> RecipeTimer:
        """A timer with no samples yet for another clip, sharing the loaded model."""
        return RecipeTimer(self.model, self.processor, clip, self.labels)

    def __call__(self) -> None:
        from recipe import run_recipe

        for phase, seconds in run_recipe(self.model, self.processor, self.clip, self.labels).phases.items():
            self.phases[phase].samples.append(seconds)

    def rows(self) -> list[Timing]:
        """The total and its phases, over the recorded rounds only (not the warm-up)."""
        rounds = len(self.total.samples)
        for timing in self.phases.values():
            del timing.samples[: len(timing.samples) - rounds]
        return [self.total, *self.phases.values()]


def median_seconds(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``repeat`` calls in a row: for settings that cannot run side by side."""
    timing = Timing("")
    interleaved([(timing, fn)], repeat, warmup=False)
    return timing.median


# --- report --------------------------------------------------------------------------------


def print_table(title: str, timings: Sequence[Timing]) -> None:
    print(f"\n{title}")
    print(f"{'measurement':<62}{'median s':>10}{'min-max s':>16}  note")
    print("-" * 124)
    for timing in timings:
        print(f"{timing.name:<62}{timing.median:>10.3f}{timing.spread:>16}  {timing.note}")


def ratio_line(label: str, numerator: Timing, denominator: Timing, comment: str = "") -> str:
    """``numerator / denominator``: the median of the per-round ratios and their range when
    both were measured in the same rounds, else the ratio of the medians."""
    if len(numerator.samples) == len(denominator.samples) > 1:
        ratios = [a / b for a, b in zip(numerator.samples, denominator.samples, strict=True)]
        value, spread = statistics.median(ratios), f"({min(ratios):.2f}-{max(ratios):.2f})"
    else:
        value, spread = numerator.median / denominator.median, ""
    return f"  {label:<60}{value:>9.2f}x {spread:<13} {comment}".rstrip()


def print_ratios(lines: Sequence[str]) -> None:
    print("ratios (median of per-round ratios, min-max):")
    for line in lines:
        print(line)


# --- fresh processes -----------------------------------------------------------------------


def run_child(command: list[str], env: dict[str, str]) -> tuple[str, str, float]:
    """Run ``command``; its stdout, stderr and peak resident memory in MB.

    The peak is the child's own VmHWM, read from /proc every 20 ms while it runs (rusage would
    count this process's memory too: Linux carries the parent's peak across fork and exec).
    """
    peak_kb = 0
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        while process.poll() is None:
            with contextlib.suppress(OSError, IndexError, ValueError):
                status = Path(f"/proc/{process.pid}/status").read_text()
                peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
            time.sleep(0.02)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{command[1:4]} exited {process.returncode}: {stderr.strip()[-2000:]}")
    return stdout, stderr, peak_kb / 1024


def run_cli(
    model_dir: Path, clip: Path, env: dict[str, str], server: str | None = None, backend: str = "auto"
) -> tuple[str, float]:
    """``xclip classify CLIP`` as a fresh process: its top-1 and peak memory (MB)."""
    command = [sys.executable, "-m", "xclip_cli", "classify", str(clip), "--labels", LABELSET, "--format", "json"]
    command += ["--server", server] if server else ["--model", str(model_dir), "--backend", backend]
    stdout, _, rss = run_child(command, env)
    top = json.loads(stdout)[0]["predictions"][0]
    return f"{top['label']} {top['probability']:.6f}", rss


def run_recipe_script(model_dir: Path, clip: Path, labels_file: Path, env: dict[str, str]) -> tuple[str, float]:
    """``recipe.py`` as a fresh process: its top-1 and peak memory (MB)."""
    command = [sys.executable, str(RECIPE_SCRIPT), str(model_dir), str(clip), str(labels_file)]
    stdout, _, rss = run_child(command, env)
    label, probability = json.loads(stdout.strip().splitlines()[-1])[0]
    return f"{label} {probability:.6f}", rss


def prepare_onnx(model_dir: Path, env: dict[str, str]) -> Timing:
    """``xclip models prepare`` (the ONNX Runtime export), timed once, with its size on disk."""
    command = [sys.executable, "-m", "xclip_cli", "models", "prepare", "--model", str(model_dir)]
    seconds, (_, stderr, rss) = timed(lambda: run_child(command, env))
    folder = Path(stderr.strip().splitlines()[-1].split(": ", 2)[2].rsplit(" (", 1)[0])
    size = sum(item.stat().st_size for item in folder.iterdir()) / 1e6
    return Timing(
        "xclip models prepare (once per checkpoint)", [seconds], f"{size:.0f} MB on disk; peak RSS {rss:.0f} MB"
    )
