"""Benchmark ``xclip_cli.classify`` against the transformers documentation recipe.

What is measured, in one run, on CPU, with a randomly initialised full-size X-CLIP
(``XCLIPModel(XCLIPConfig())``: base-patch32 shape, 8 frames, 224 px, 400 Kinetics labels)
and a synthetic 1280x720 30 fps H.264 clip of 10 s (``--long`` adds a 60 s one):

* the seed recipe, in process with the model loaded: the transformers docs' PyAV loop that
  decodes every frame up to the last sampled one, ``XCLIPProcessor(text=labels, videos=...)``
  and ``model(**inputs)`` (text encoder for all 400 labels on every call), split into its
  decode / processor / forward phases;
* our path, in process with the runner loaded and the text features cached:
  ``classify_videos(runner, [path], labelset)``; its first call (cold text cache) is reported
  separately (with the text side's share), and so are its parts: decoding plus preprocessing
  (``load_frames``), the warm text-feature lookup and the vision-side forward
  (``runner.video_logits``); plus plain sequential decoding up to the last sampled frame with
  PyAV's default decoder threading (what ``xclip_cli.media.decode`` uses) and with ``AUTO``, since
  which one is faster depends on how the file was encoded (see ``--sliced-clips``);
* the scan path (8 videos, two decode-ahead workers), the same stream decoded with no model
  (the floor no model speed-up can beat) and, on CPUs with bf16 units, the scan path and the
  vision forward with ``--precision bf16``;
* agreement of both paths on the same clip: top-5 labels and probabilities, largest
  probability and logit differences over all 400 labels;
* one-shot wall times and peak memory as a user sees them: ``python -m xclip_cli classify ...``
  (warm disk text cache) on ONNX Runtime (the default on the CPU once ``xclip models prepare``
  has run: its time and size are reported) and with ``--backend torch``, and a fresh Python
  script running the seed recipe (imports, ``from_pretrained``, one video).

Timings are medians of ``--repeat`` runs; nothing is asserted. The checkpoint (786 MB) and
the clips are built once in ``--workdir`` (default ``~/.cache/xclip-cli-bench``) and reused.
The text cache lives in a temporary ``XCLIP_CACHE_DIR``, so the user's cache is untouched.

Run it with ``make bench`` or ``python benchmarks/bench_classify.py [--quick] [--long]
[--sliced-clips] [--repeat N] [--workdir DIR]``. A run takes about 3 minutes (10 s clip, 3
repeats) plus the one-time checkpoint and clip creation; ``--long`` adds about 4 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from xclip_cli.classify import classify_videos
from xclip_cli.device import bf16_is_fast
from xclip_cli.labels import LabelSet, resolve_labels
from xclip_cli.options import ClassifyOptions
from xclip_cli.pipeline import load_frames, view_pixels
from xclip_cli.results import VideoResult
from xclip_cli.runner import XClipRunner

REPO = Path(__file__).resolve().parent.parent
TOKENIZER_DIR = REPO / "tests" / "data" / "clip_tokenizer"
DEFAULT_WORKDIR = Path.home() / ".cache" / "xclip-cli-bench"
MARKER = "COMPLETE"  # written last, so an interrupted save is rebuilt
LABELSET = "kinetics400"
IMAGE_MEAN = [0.485, 0.456, 0.406]
IMAGE_STD = [0.229, 0.224, 0.225]
WIDTH, HEIGHT, FPS = 1280, 720, 30
TOP_K = 5

# The seed recipe as a fresh script: argv = model dir, clip, labels file (one per line).
SEED_SCRIPT = """
import json, sys
import av, numpy as np, torch
from transformers import XCLIPModel, XCLIPProcessor

model_dir, clip, labels_file = sys.argv[1:4]
labels = open(labels_file, encoding="utf-8").read().splitlines()
processor = XCLIPProcessor.from_pretrained(model_dir)
model = XCLIPModel.from_pretrained(model_dir).eval()
container = av.open(clip)
n = container.streams.video[0].frames
t = model.config.vision_config.num_frames
indices = [int((i + 0.5) * n / t) for i in range(t)]
frames = []
for i, frame in enumerate(container.decode(video=0)):
    if i > indices[-1]:
        break
    if i in indices:
        frames.append(frame.to_ndarray(format="rgb24"))
inputs = processor(text=labels, videos=list(np.stack(frames)), return_tensors="pt", padding=True)
with torch.inference_mode():
    probs = model(**inputs).logits_per_video.softmax(dim=1)[0]
top = probs.topk(5)
print(json.dumps([[labels[i], float(p)] for p, i in zip(top.values, top.indices)]))
"""


@dataclass
class Timing:
    """Wall-clock samples of one measured operation."""

    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> str:
        if len(self.samples) < 2:
            return "-"
        return f"{min(self.samples):.3f}-{max(self.samples):.3f}"


@dataclass
class SeedResult:
    """One seed-recipe run: full-label probabilities and logits, phase times, model inputs."""

    probabilities: np.ndarray
    logits: np.ndarray
    phases: dict[str, float]
    pixel_values: np.ndarray


@dataclass
class ClipReport:
    """Everything measured on one clip."""

    clip: Path
    timings: list[Timing]
    agreement: list[str]


# --- setup ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="checkpoint and clips (reused)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--long", action="store_true", help="also measure a 60 s clip")
    parser.add_argument(
        "--sliced-clips",
        action="store_true",
        help="encode the clips with x264 slice threads (PyAV's default) instead of frame threads",
    )
    parser.add_argument("--quick", action="store_true", help="one run per measurement (noisier)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
    args.repeat = max(1, args.repeat)
    return args


@contextmanager
def bench_setup(workdir: Path) -> Iterator[Path]:
    """Quiet transformers, the reused work folder, and a scratch text cache for the run.

    The cache is set before any text feature is computed or stored, so the user's is untouched.
    """
    quiet_transformers()
    workdir = workdir.expanduser()
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xclip-bench-cache-") as cache:
        os.environ["XCLIP_CACHE_DIR"] = cache
        yield workdir


def quiet_transformers() -> None:
    """No progress bars or load reports from transformers in the benchmark's own process."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore")


def ensure_checkpoint(workdir: Path) -> Path:
    """A random full-size X-CLIP with the hub checkpoint's processor settings, saved once."""
    folder = workdir / "xclip-random-base-patch32"
    if (folder / MARKER).exists():
        return folder
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    log(f"building and saving a random XCLIPModel(XCLIPConfig()) to {folder} (once) ...")
    folder.mkdir(parents=True, exist_ok=True)
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


def ensure_clip(workdir: Path, seconds: int, sliced: bool = False, gop: int | None = None) -> Path:
    """A synthetic 720p H.264 clip with motion and noise, written once (``gop``: frames per keyframe)."""
    threads = "sliced" if sliced else "frame"
    keyint = "" if gop is None else f"_g{gop}"
    path = workdir / f"synthetic_{WIDTH}x{HEIGHT}_{FPS}fps_{seconds}s_{threads}{keyint}.mp4"
    done = path.with_suffix(".mp4." + MARKER)
    if done.exists() and path.exists():
        return path
    log(f"writing {path} (once) ...")
    write_synthetic_clip(path, seconds, sliced, gop=gop)
    done.write_text("ok\n")
    return path


def write_synthetic_clip(path: Path, seconds: int, sliced: bool, seed: int = 0, gop: int | None = None) -> None:
    """Panning blocky texture, a moving disc and per-frame noise; libx264 defaults (keyint 250)
    unless ``gop`` sets the keyframe interval (phones and broadcast: 0.5-2 s).

    Encoder threading decides how the file can be decoded in parallel: frame threads
    (``sliced_threads=0``, what the ffmpeg command line writes) or, with ``sliced``, slice
    threads (PyAV's default encoder setting), whose frames decode in parallel slices.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(HEIGHT // 16 + 2, (WIDTH + 8 * FPS * seconds) // 16 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)  # wider than a frame, to pan over
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        stream.codec_context.thread_type = "SLICE" if sliced else "FRAME"
        if gop is not None:
            stream.options = {"g": str(gop)}
        for index in range(FPS * seconds):
            offset = 8 * index  # pan 8 px per frame
            image = texture[:HEIGHT, offset : offset + WIDTH].astype(np.int16)
            cx = WIDTH / 2 + 400 * np.sin(index / 20)
            cy = HEIGHT / 2 + 200 * np.cos(index / 15)
            image[(xs - cx) ** 2 + (ys - cy) ** 2 < 80**2] = (255, 220, 40)
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


def environment(load_at_start: tuple[float, float, float]) -> list[str]:
    import transformers

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return [
        f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"av {av.__version__}",
        f"torch.get_num_threads() = {torch.get_num_threads()}, os.cpu_count() = {os.cpu_count()}",
        f"CPU: {cpu}",
        f"load average (1/5/15 min) at start: {format_load(load_at_start)}; at end: {format_load(os.getloadavg())}"
        " (other processes on the machine inflate the timings)",
    ]


def format_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{value:.2f}" for value in load)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def measure(name: str, fn: Callable[[], Any], repeat: int, note: str = "") -> Timing:
    timing = Timing(name, note=note)
    for _ in range(repeat):
        seconds, _ = timed(fn)
        timing.samples.append(seconds)
    return timing


# --- the seed recipe (transformers docs) ---------------------------------------------------


def segment_centres(num_frames: int, clip_len: int) -> list[int]:
    """X-CLIP's test-time sampling: the centre frame of each of ``clip_len`` equal segments."""
    return [int((i + 0.5) * num_frames / clip_len) for i in range(clip_len)]


def read_video_pyav(container: Any, indices: list[int]) -> np.ndarray:
    """The docs' decoder: decode every frame from the start up to the last index."""
    frames = []
    container.seek(0)
    wanted = set(indices)
    for i, frame in enumerate(container.decode(video=0)):
        if i > indices[-1]:
            break
        if i in wanted:
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def run_seed(model: Any, processor: Any, clip: Path, labels: list[str]) -> SeedResult:
    """One video through the docs recipe, with the time of each phase."""
    phases: dict[str, float] = {}
    start = time.perf_counter()
    with av.open(str(clip)) as container:
        total = container.streams.video[0].frames
        indices = segment_centres(total, int(model.config.vision_config.num_frames))
        video = read_video_pyav(container, indices)
    phases["decode"] = time.perf_counter() - start
    start = time.perf_counter()
    inputs = processor(text=labels, videos=list(video), return_tensors="pt", padding=True)
    phases["processor"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        logits = model(**inputs).logits_per_video
        probabilities = logits.softmax(dim=1)
    phases["forward"] = time.perf_counter() - start
    return SeedResult(
        probabilities=probabilities[0].numpy(),
        logits=logits[0].numpy(),
        phases=phases,
        pixel_values=inputs["pixel_values"].numpy(),
    )


SEED_PHASES = {
    "decode": "PyAV loop over every frame up to the last index",
    "processor": "tokenize 400 labels + VideoMAE image processor (PIL backend)",
    "forward": "model(**inputs): text encoder x400 + video side",
}


def measure_seed(
    model: Any, processor: Any, clip: Path, labels: list[str], repeat: int
) -> tuple[list[Timing], SeedResult]:
    total = Timing("seed recipe, per video")
    phases = {name: Timing(f"  seed: {name}", note=note) for name, note in SEED_PHASES.items()}
    results = []
    for _ in range(repeat):
        seconds, result = timed(lambda: run_seed(model, processor, clip, labels))
        total.samples.append(seconds)
        for name, value in result.phases.items():
            phases[name].samples.append(value)
        results.append(result)
    return [total, *phases.values()], results[-1]


# --- our path ------------------------------------------------------------------------------


def run_ours(runner: XClipRunner, clip: Path, labelset: LabelSet, top_k: int = TOP_K) -> VideoResult:
    results = list(classify_videos(runner, [str(clip)], labelset, ClassifyOptions(top_k=top_k)))
    if not results[0].ok:
        raise RuntimeError(f"classify failed on {clip}: {results[0].error}")
    return results[0]


def measure_first_call(runner: XClipRunner, clip: Path, labelset: LabelSet) -> list[Timing]:
    """The warm-up call that fills the text cache, and the text side's share of it."""
    text_side = Timing("ours: cold text side (once, inside the first call)")
    compute = runner.label_text_features

    def timed_text_features(labels: LabelSet) -> np.ndarray:
        seconds, features = timed(lambda: compute(labels))
        text_side.samples.append(seconds)
        return features

    runner.label_text_features = timed_text_features  # type: ignore[method-assign]
    try:
        seconds, _ = timed(lambda: run_ours(runner, clip, labelset))
    finally:
        del runner.label_text_features  # back to the method
    text_side.note = f"tokenize + encode {len(labelset)} labels + store; encoder calls: {runner.text_encoder_calls}"
    first = Timing("ours: first classify call, cold text cache (once)", [seconds], "text side + one video")
    return [text_side, first]


def measure_ours(runner: XClipRunner, clip: Path, labelset: LabelSet, repeat: int) -> list[Timing]:
    ours = measure("ours: classify_videos, per video (warm)", lambda: run_ours(runner, clip, labelset), repeat)
    frames = measure("  ours: decode + preprocess", lambda: load_frames(runner, str(clip), ClassifyOptions()), repeat)
    frames.note = "load_frames: planned seeks + Pillow resize"
    text = measure("  ours: text features (warm)", lambda: runner.label_text_features(labelset), repeat)
    text.note = "tokenize + hash + memory-cache hit"
    video = load_frames(runner, str(clip), ClassifyOptions())
    pixel_values = view_pixels(video)
    features = runner.label_text_features(labelset)
    vision = measure("  ours: vision forward", lambda: runner.video_logits(pixel_values, features), repeat)
    vision.note = "runner.video_logits, cached text features"
    stream = measure_stream(runner, clip, labelset, repeat)
    return [ours, frames, text, vision, stream, measure_decode_stream(runner, clip, repeat)]


IMPORTS_ONLY = "import torch; from transformers import XCLIPModel; XCLIPModel"
STREAM_VIDEOS = 8  # videos per streamed run: the scan path, decoding ahead while the model runs
STREAM_WORKERS = 2  # the CLI default
BF16_ROWS = ("ours: stream of videos, per video, --precision bf16", "vision forward, --precision bf16")


def measure_stream(runner: XClipRunner, clip: Path, labelset: LabelSet, repeat: int) -> Timing:
    """Per-video time of a stream of videos with decode-ahead workers (what `xclip scan` runs)."""
    options = ClassifyOptions(top_k=TOP_K, workers=STREAM_WORKERS)

    def stream() -> None:
        results = list(classify_videos(runner, [str(clip)] * STREAM_VIDEOS, labelset, options))
        if not all(result.ok for result in results):
            raise RuntimeError(f"classify failed on {clip}")

    name = "ours: stream of videos, per video (scan path)"
    if runner.precision != "fp32":
        name = f"ours: stream of videos, per video, --precision {runner.precision}"
    timing = measure(name, stream, repeat)
    timing.samples = [seconds / STREAM_VIDEOS for seconds in timing.samples]
    timing.note = f"{STREAM_VIDEOS} videos, --workers {STREAM_WORKERS}; total / {STREAM_VIDEOS}"
    return timing


def measure_decode_stream(runner: XClipRunner, clip: Path, repeat: int) -> Timing:
    """Decode + preprocess of a stream with the scan's workers and no model: the scan's floor."""

    def decode_all() -> None:
        with ThreadPoolExecutor(STREAM_WORKERS) as pool:
            list(pool.map(lambda path: load_frames(runner, path, ClassifyOptions()), [str(clip)] * STREAM_VIDEOS))

    timing = measure("  decode + preprocess only, stream (floor)", decode_all, repeat)
    timing.samples = [seconds / STREAM_VIDEOS for seconds in timing.samples]
    timing.note = f"{STREAM_VIDEOS} videos on {STREAM_WORKERS} threads, no model; total / {STREAM_VIDEOS}"
    return timing


def measure_bf16(model_dir: Path, clip: Path, labelset: LabelSet, repeat: int) -> list[Timing]:
    """The scan path and the vision forward in bf16 (lossy, opt-in), where the CPU has bf16 units."""
    runner = XClipRunner.from_pretrained(str(model_dir), device="cpu", precision="bf16")
    features = runner.label_text_features(labelset)
    pixel_values = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
    vision = measure("  vision forward, --precision bf16", lambda: runner.video_logits(pixel_values, features), repeat)
    vision.note = "bf16 autocast; drift: benchmarks/bench_precision.py"
    return [measure_stream(runner, clip, labelset, repeat), vision]


def decode_up_to(clip: Path, last: int, thread_type: str | None) -> None:
    """Decode frames 0..last (no conversion), with PyAV's default threading or ``thread_type``."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        if thread_type is not None:
            stream.thread_type = thread_type
        for index, _frame in enumerate(container.decode(stream)):
            if index >= last:
                break


def measure_decode_threads(clip: Path, num_frames: int, repeat: int) -> list[Timing]:
    """Sequential decoding up to the last sampled frame: how much decoder threading matters."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        last = segment_centres(stream.frames, num_frames)[-1]
        default = str(stream.codec_context.thread_type.name)
    timings = []
    for name, thread_type in ((f"PyAV default ({default})", None), ("AUTO (frame threads)", "AUTO")):
        timing = measure(
            f"  decode frames 0..{last}, threads {name}", lambda t=thread_type: decode_up_to(clip, last, t), repeat
        )
        timing.note = "no rgb conversion"
        timings.append(timing)
    return timings


# --- agreement -----------------------------------------------------------------------------


def agreement(runner: XClipRunner, clip: Path, labelset: LabelSet, seed: SeedResult) -> list[str]:
    """Top-5 side by side and the largest differences over all labels."""
    result = run_ours(runner, clip, labelset, top_k=len(labelset))
    index = {name: i for i, name in enumerate(labelset.names)}
    ours_prob = np.zeros(len(labelset), dtype=np.float64)
    ours_logit = np.zeros(len(labelset), dtype=np.float64)
    for prediction in result.predictions:
        ours_prob[index[prediction.label]] = prediction.probability
        ours_logit[index[prediction.label]] = prediction.logit
    seed_top = np.argsort(-seed.probabilities)[:TOP_K]
    ours_top = [index[p.label] for p in result.predictions[:TOP_K]]
    lines = [f"{'rank':>4}  {'seed recipe':<34}{'p':>10}   {'ours':<34}{'p':>10}"]
    for rank, (s, o) in enumerate(zip(seed_top, ours_top, strict=True), start=1):
        lines.append(
            f"{rank:>4}  {labelset.names[s]:<34}{seed.probabilities[s]:>10.6f}   "
            f"{labelset.names[o]:<34}{ours_prob[o]:>10.6f}"
        )
    same = "same labels, same order" if list(seed_top) == ours_top else "DIFFERENT top-5"
    lines.append(f"top-5: {same}")
    lines.append(f"max |prob difference| over 400 labels:  {np.abs(ours_prob - seed.probabilities).max():.3e}")
    lines.append(f"max |logit difference| over 400 labels: {np.abs(ours_logit - seed.logits).max():.3e}")
    lines.append(f"logit range (seed): {seed.logits.min():.4f} .. {seed.logits.max():.4f}")
    # Separate the model split from preprocessing: our model path on the seed's pixel values.
    features = runner.label_text_features(labelset)
    same_input = runner.video_logits(seed.pixel_values, features)[0]
    lines.append(
        f"runner.video_logits on the seed's pixel_values vs seed logits: max diff "
        f"{np.abs(same_input - seed.logits).max():.3e} (model split only)"
    )
    ours_pixels = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))[0]
    lines.append(
        f"pixel values, ours vs seed processor: max diff {np.abs(ours_pixels - seed.pixel_values[0]).max():.3e} "
        f"(normalised units; preprocessing only)"
    )
    return lines


# --- one-shot subprocesses -----------------------------------------------------------------


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
        raise RuntimeError(f"{command[2:4]} exited {process.returncode}: {stderr.strip()[-2000:]}")
    return stdout, stderr, peak_kb / 1024


def run_cli(
    model_dir: Path, clip: Path, env: dict[str, str], server: str | None = None, backend: str = "auto"
) -> tuple[str, float]:
    command = [sys.executable, "-m", "xclip_cli", "classify", str(clip), "--labels", LABELSET, "--format", "json"]
    command += ["--server", server] if server else ["--model", str(model_dir), "--backend", backend]
    stdout, _, rss = run_child(command, env)
    top = json.loads(stdout)[0]["predictions"][0]
    return f"{top['label']} {top['probability']:.6f}", rss


def run_seed_script(model_dir: Path, clip: Path, labels_file: Path, env: dict[str, str]) -> tuple[str, float]:
    stdout, _, rss = run_child([sys.executable, "-c", SEED_SCRIPT, str(model_dir), str(clip), str(labels_file)], env)
    label, probability = json.loads(stdout.strip().splitlines()[-1])[0]
    return f"{label} {probability:.6f}", rss


def count_cache_files() -> int:
    """Text-feature files in the benchmark's XCLIP_CACHE_DIR (unchanged = the CLI hit the cache)."""
    return sum(1 for _ in Path(os.environ["XCLIP_CACHE_DIR"]).rglob("text-features/*.npy"))


def prepare_onnx(model_dir: Path, env: dict[str, str]) -> Timing:
    """``xclip models prepare`` (the ONNX Runtime export), timed once, with its size on disk."""
    command = [sys.executable, "-m", "xclip_cli", "models", "prepare", "--model", str(model_dir)]
    seconds, (_, stderr, rss) = timed(lambda: run_child(command, env))
    folder = Path(stderr.strip().splitlines()[-1].split(": ", 2)[2].rsplit(" (", 1)[0])
    size = sum(item.stat().st_size for item in folder.iterdir()) / 1e6
    return Timing(
        "xclip models prepare (once per checkpoint)", [seconds], f"{size:.0f} MB on disk; peak RSS {rss:.0f} MB"
    )


def measure_one_shot(model_dir: Path, clip: Path, labels: list[str], workdir: Path, repeat: int) -> list[Timing]:
    env = dict(os.environ)
    labels_file = workdir / f"{LABELSET}_labels.txt"
    labels_file.write_text("\n".join(labels) + "\n", encoding="utf-8")
    prepared = prepare_onnx(model_dir, env)
    onnx = Timing("CLI one-shot, ONNX Runtime (auto: prepared, warm text cache)")
    on_torch = Timing("CLI one-shot, --backend torch (warm text cache)")
    seed = Timing("seed one-shot script (imports + from_pretrained + recipe)")
    floor = Timing("imports alone (torch, transformers' XCLIPModel), fresh process")
    cached_before = count_cache_files()
    rss: dict[str, float] = {}
    for _ in range(repeat):  # interleaved, so load drift hits all alike
        for timing, run in (
            (onnx, lambda: run_cli(model_dir, clip, env)),
            (on_torch, lambda: run_cli(model_dir, clip, env, backend="torch")),
            (seed, lambda: run_seed_script(model_dir, clip, labels_file, env)),
        ):
            seconds, (top, peak) = timed(run)
            timing.samples.append(seconds)
            timing.note, rss[timing.name] = f"top-1: {top}", max(peak, rss.get(timing.name, 0.0))
        seconds, _ = timed(lambda: subprocess.run([sys.executable, "-c", IMPORTS_ONLY], env=env, check=True))
        floor.samples.append(seconds)
    for timing in (onnx, on_torch, seed):
        timing.note += f"; peak RSS {rss[timing.name]:.0f} MB"
    floor.note = "what any process using transformers' X-CLIP pays before it can load weights"
    onnx.note += f"; text-cache files {cached_before} -> {count_cache_files()}"
    served = Timing("CLI one-shot through a running xclip serve")
    with running_server(model_dir, clip.parent, env) as url:
        run_cli(model_dir, clip, env, url)  # the server's first request fills its text cache
        for _ in range(repeat):
            seconds, (served_top, _) = timed(lambda: run_cli(model_dir, clip, env, url))
            served.samples.append(seconds)
    served.note = f"top-1: {served_top}; model loaded once by the server"
    return [onnx, on_torch, seed, served, floor, prepared]


@contextmanager
def running_server(model_dir: Path, root: Path, env: dict[str, str]) -> Iterator[str]:
    """``xclip serve`` on a free port, until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "xclip_cli", "serve", "--model", str(model_dir), "--port", str(port)]
    server = subprocess.Popen([*command, "--root", str(root)], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


# --- report --------------------------------------------------------------------------------


def print_table(title: str, timings: list[Timing]) -> None:
    print(f"\n{title}")
    print(f"{'measurement':<62}{'median s':>10}{'min-max s':>16}  note")
    print("-" * 124)
    for timing in timings:
        print(f"{timing.name:<62}{timing.median:>10.3f}{timing.spread:>16}  {timing.note}")


def ratio_line(label: str, numerator: Timing, denominator: Timing, comment: str = "") -> str:
    return f"  {label:<60}{numerator.median / denominator.median:>9.2f}x  {comment}".rstrip()


def measure_clip(
    clip: Path, seed_model: Any, processor: Any, runner: XClipRunner, labelset: LabelSet, repeat: int
) -> ClipReport:
    log(f"{clip.name}: seed recipe x{repeat} ...")
    seed_timings, seed_result = measure_seed(seed_model, processor, clip, labelset.names, repeat)
    log(f"{clip.name}: our path x{repeat} ...")
    ours_timings = measure_ours(runner, clip, labelset, repeat)
    ours_timings += measure_decode_threads(clip, runner.num_frames, repeat)
    log(f"{clip.name}: agreement ...")
    lines = agreement(runner, clip, labelset, seed_result)
    return ClipReport(clip=clip, timings=seed_timings + ours_timings, agreement=lines)


def by_name(timings: list[Timing]) -> dict[str, Timing]:
    return {timing.name.strip(): timing for timing in timings}


def print_clip_report(report: ClipReport) -> None:
    print_table(f"== {report.clip.name}: per video, in process, model loaded ==", report.timings)
    timings = by_name(report.timings)
    seed, ours = timings["seed recipe, per video"], timings["ours: classify_videos, per video (warm)"]
    print("ratios:")
    print(ratio_line("seed / ours per video", seed, ours))
    stream = timings["ours: stream of videos, per video (scan path)"]
    print(ratio_line("seed / ours streamed (scan path)", seed, stream, "(issue #3 target >= 10x)"))
    print(ratio_line("ours streamed / vision forward", stream, timings["ours: vision forward"], "(target <= 1.3x)"))
    print(ratio_line("ours / vision forward", ours, timings["ours: vision forward"], "(1.0 = no overhead)"))
    print(
        ratio_line(
            "seed decode / ours decode+preprocess", timings["seed: decode"], timings["ours: decode + preprocess"]
        )
    )
    print(ratio_line("ours streamed / its decode floor", stream, timings["decode + preprocess only, stream (floor)"]))
    bf16 = timings.get("ours: stream of videos, per video, --precision bf16")
    if bf16 is not None:
        print(ratio_line("seed / ours streamed, --precision bf16", seed, bf16, "(lossy, opt-in)"))
        print(ratio_line("ours streamed bf16 / bf16 vision forward", bf16, timings["vision forward, --precision bf16"]))
    default, auto = (t for t in report.timings if t.name.strip().startswith("decode frames"))
    print(ratio_line("decoding: PyAV default threads / AUTO", default, auto, "(< 1: AUTO is slower here)"))
    print("agreement (same clip, 400 labels; random weights make the probabilities nearly flat):")
    for line in report.agreement:
        print(f"  {line}")


def print_summary(report: ClipReport, cold: list[Timing], one_shot: list[Timing]) -> None:
    timings = by_name(report.timings)
    seed, ours = timings["seed recipe, per video"], timings["ours: classify_videos, per video (warm)"]
    vision = timings["ours: vision forward"]
    cli, cli_torch, script, served, floor, prepared = one_shot
    stream = timings["ours: stream of videos, per video (scan path)"]
    bf16 = [timings[name] for name in BF16_ROWS if name in timings]
    rows = [
        seed,
        ours,
        stream,
        timings["ours: decode + preprocess"],
        timings["decode + preprocess only, stream (floor)"],
        vision,
        *bf16,
        *cold,
        cli,
        cli_torch,
        script,
        served,
        floor,
        prepared,
    ]
    print_table(f"== summary ({report.clip.name}) ==", [Timing(t.name.strip(), t.samples, t.note) for t in rows])
    print("ratios:")
    print(ratio_line("seed recipe / ours, per video in process", seed, ours))
    print(ratio_line("seed recipe / ours streamed (scan path)", seed, stream, "(issue #3 target >= 10x)"))
    print(ratio_line("ours per video / vision forward", ours, vision))
    print(ratio_line("ours streamed / vision forward", stream, vision, "(issue #3 target <= 1.3x)"))
    if bf16:
        print(ratio_line("seed recipe / ours streamed, --precision bf16", seed, bf16[0], "(lossy, opt-in)"))
    print(ratio_line("seed one-shot script / CLI one-shot (ONNX Runtime)", script, cli, "(issue #14: >= 3.3x)"))
    print(
        ratio_line("seed one-shot script / CLI one-shot, --backend torch", script, cli_torch, "(issue #8 target >= 2x)")
    )
    print(ratio_line("CLI --backend torch / CLI ONNX Runtime, one-shot", cli_torch, cli))
    print(ratio_line("seed one-shot script / imports alone", script, floor, "(the best any one-shot run can do)"))
    print(ratio_line("seed one-shot script / CLI through xclip serve", script, served, "(issue #8: stay warm)"))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    with bench_setup(args.workdir) as workdir:
        run(args, workdir)


def run(args: argparse.Namespace, workdir: Path) -> None:
    from transformers import XCLIPModel, XCLIPProcessor

    load_at_start = os.getloadavg()
    model_dir = ensure_checkpoint(workdir)
    lengths = [10, 60] if args.long else [10]
    clips = [ensure_clip(workdir, length, args.sliced_clips) for length in lengths]
    labelset = resolve_labels(LABELSET)

    log("loading the runner and the seed model ...")
    runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
    processor = XCLIPProcessor.from_pretrained(str(model_dir))
    seed_model = XCLIPModel.from_pretrained(str(model_dir)).eval()

    log("first classify call (cold text cache) ...")
    cold = measure_first_call(runner, clips[0], labelset)
    reports = [measure_clip(clip, seed_model, processor, runner, labelset, args.repeat) for clip in clips]
    if bf16_is_fast(torch.device("cpu")):
        log(f"{clips[0].name}: --precision bf16 x{args.repeat} ...")
        reports[0].timings += measure_bf16(model_dir, clips[0], labelset, args.repeat)
    del seed_model
    log(f"one-shot subprocess runs x{args.repeat} ({clips[0].name}) ...")
    one_shot = measure_one_shot(model_dir, clips[0], labelset.names, workdir, args.repeat)

    print("\n=== xclip-cli benchmark: classify vs the transformers docs recipe ===")
    for line in environment(load_at_start):
        print(line)
    print(f"model: {model_dir} (random XCLIPModel(XCLIPConfig()), {runner.num_frames} frames, 224 px)")
    print(f"labels: {LABELSET}, {len(labelset)} labels; medians of {args.repeat} run(s)")
    for clip in clips:
        print(f"clip: {clip_facts(clip)}")
    for report in reports:
        print_clip_report(report)
    print_summary(reports[0], cold, one_shot)


if __name__ == "__main__":
    main()
