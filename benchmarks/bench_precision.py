"""fp32 against the opt-in bf16 mode: speed of each side and how far the logits drift.

Same full-size random X-CLIP, 10 s 720p clip and 400 Kinetics labels as ``bench_classify.py``
(built once in its work dir). bf16 only pays off with bfloat16 hardware (GPUs, AVX-512 BF16 or
AMX CPUs); the script prints whether this CPU has it.
Run: ``python benchmarks/bench_precision.py [--repeat N] [--quick] [--smoke] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from common import LABELSET, Timing, add_bench_arguments, bench_session, interleaved

from xclip_cli.jobs.classify import load_frames, view_pixels
from xclip_cli.labels import resolve_labels
from xclip_cli.model.device import bf16_is_fast
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser, repeat=5)
    args = parser.parse_args(argv)
    with bench_session(args) as bench:
        model_dir, clip = bench.checkpoint(), bench.clip(10)
        labels = resolve_labels(LABELSET)
        print(
            f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
            f"bf16 units: {bf16_is_fast(torch.device('cpu'))}"
        )
        logits, runs, cold = {}, [], {}
        for precision in ("fp32", "bf16"):
            runner = XClipRunner.from_pretrained(str(model_dir), device="cpu", precision=precision)
            started = time.perf_counter()
            text = runner.label_text_features(labels)
            cold[precision] = time.perf_counter() - started
            pixels = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
            logits[precision] = runner.video_logits(pixels, text)
            runs.append((Timing(precision), lambda r=runner, p=pixels, t=text: r.video_logits(p, t)))
        interleaved(runs, bench.repeat)  # fp32 and bf16 round by round
    for timing, _ in runs:
        print(
            f"{timing.name}: text side, {len(labels)} labels, cold {cold[timing.name]:.2f} s; "
            f"video side median of {bench.repeat} {timing.median:.3f} s (min-max {timing.spread})"
        )
    drift = np.abs(logits["bf16"] - logits["fp32"])
    same_top5 = (np.argsort(-logits["bf16"], axis=-1)[:, :5] == np.argsort(-logits["fp32"], axis=-1)[:, :5]).all()
    scale = runner.model.logit_scale.exp().item()
    print(
        f"logit drift bf16 vs fp32: max {drift.max():.4f}, mean {drift.mean():.4f} "
        f"(logit scale {scale:.2f}); top-5 unchanged: {same_top5}"
    )


if __name__ == "__main__":
    main()
