"""One-shot processes as a user runs them: ``xclip classify`` of one clip against the recipe as a script.

Each round starts fresh processes, interleaved, on the 10 s 720p clip with 400 Kinetics labels
(wall time and the process's own peak resident memory):

* ``python -m xclip_cli classify`` on ONNX Runtime (auto, the CPU default, after ``xclip models
  prepare``, whose time and size are reported) and with ``--backend torch``, both with a warm
  disk text cache (the count of cached files shows no run recomputed them);
* the recipe as a fresh script (``recipe.py``: imports, ``from_pretrained``, one video);
* the imports alone (torch, transformers' ``XCLIPModel``): what any process using transformers'
  X-CLIP pays before it can load weights;
* decoding the clip's sampled frames alone in a fresh process (the interpreter, PyAV and
  ``sample_video``, no model): the floor of any one-shot run that classifies those exact frames.

Run it with ``python benchmarks/bench_oneshot.py [--repeat N] [--quick] [--smoke] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import (
    LABELSET,
    Bench,
    Timing,
    add_bench_arguments,
    bench_session,
    clip_facts,
    environment,
    interleaved,
    log,
    prepare_onnx,
    print_ratios,
    print_table,
    ratio_line,
    run_cli,
    run_recipe_script,
    write_labels_file,
)

from xclip_cli.labels import resolve_labels
from xclip_cli.model.torch.runner import XClipRunner

IMPORTS_ONLY = "import torch; from transformers import XCLIPModel; XCLIPModel"
DECODE_ONLY = "import sys; from xclip_cli.media.decode import sample_video; sample_video(sys.argv[1], int(sys.argv[2]))"


def count_cache_files() -> int:
    """Text-feature files in the run's XCLIP_CACHE_DIR (unchanged = every run hit the cache)."""
    return sum(1 for _ in Path(os.environ["XCLIP_CACHE_DIR"]).rglob("text-features/*.npy"))


def measure(bench: Bench, model_dir: Path, clip: Path, prepare: bool = True) -> list[Timing]:
    """The one-shot rows, ``xclip models prepare`` last (when ``prepare``: a cache that already
    holds the prepared graphs can skip it)."""
    env = dict(os.environ)
    labelset = resolve_labels(LABELSET)
    labels_file = write_labels_file(bench, labelset.names)
    prepared = prepare_onnx(model_dir, env) if prepare else None
    runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
    runner.label_text_features(labelset)  # warm disk cache
    frames = str(runner.num_frames)
    cached_before = count_cache_files()
    rows: list[tuple[Timing, Callable[[], tuple[str, float]]]] = [
        (Timing("recipe as a fresh script"), lambda: run_recipe_script(model_dir, clip, labels_file, env)),
        (Timing("xclip classify, auto: ONNX Runtime (prepared)"), lambda: run_cli(model_dir, clip, env)),
        (Timing("xclip classify --backend torch"), lambda: run_cli(model_dir, clip, env, backend="torch")),
    ]
    peaks: dict[str, float] = {}

    def noting(timing: Timing, run: Callable[[], tuple[str, float]]) -> Callable[[], None]:
        def call() -> None:
            top, peak = run()
            timing.note = f"top-1: {top}"
            peaks[timing.name] = max(peak, peaks.get(timing.name, 0.0))

        return call

    imports = Timing("imports alone (torch, transformers' XCLIPModel)", note="before any weights load")
    decode = Timing(f"decoding the {frames} sampled frames alone", note="fresh process, no model: the floor")
    interleaved(
        [
            *[(timing, noting(timing, run)) for timing, run in rows],
            (imports, lambda: subprocess.run([sys.executable, "-c", IMPORTS_ONLY], env=env, check=True)),
            (
                decode,
                lambda: subprocess.run([sys.executable, "-c", DECODE_ONLY, str(clip), frames], env=env, check=True),
            ),
        ],
        bench.repeat,
        warmup=False,  # every round is a fresh process; the disk cache is warm already
    )
    for timing, _ in rows:
        timing.note += f"; peak RSS {peaks[timing.name]:.0f} MB"
    rows[1][0].note += f"; text-cache files {cached_before} -> {count_cache_files()}"
    return [*(timing for timing, _ in rows), imports, decode, *([prepared] if prepared else [])]


def ratios(timings: Sequence[Timing]) -> list[str]:
    recipe, onnx, torch, imports, decode = timings[:5]
    return [
        ratio_line("recipe script / xclip classify (ONNX Runtime)", recipe, onnx, "(issue #14: >= 3.3x)"),
        ratio_line("recipe script / xclip classify --backend torch", recipe, torch, "(issue #8 target >= 2x)"),
        ratio_line("xclip classify --backend torch / ONNX Runtime", torch, onnx),
        ratio_line("recipe script / imports alone", recipe, imports, "(the best a torch one-shot run can do)"),
        ratio_line("recipe script / decoding alone", recipe, decode, "(the best any run of these frames can do)"),
        ratio_line("xclip classify (ONNX Runtime) / decoding alone", onnx, decode),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()
    with bench_session(args) as bench:
        model_dir, clip = bench.checkpoint(), bench.clip(10)
        log(f"xclip models prepare, then {bench.repeat} round(s) of fresh processes ...")
        timings = measure(bench, model_dir, clip)
    print("\n=== xclip-cli benchmark: one-shot processes vs the recipe as a script ===")
    for line in environment(load_at_start):
        print(line)
    print(f"model: {model_dir}; labels: {LABELSET}; clip: {clip_facts(clip)}")
    print_table(f"== one-shot, fresh processes, medians of {bench.repeat} interleaved round(s) ==", timings)
    print_ratios(ratios(timings))


if __name__ == "__main__":
    main()
