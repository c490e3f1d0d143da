"""fp32 against the opt-in bf16 mode: speed of each side and how far the logits drift.

Same full-size random X-CLIP, 10 s 720p clip and 400 Kinetics labels as ``bench_classify.py``
(built once in its work dir). bf16 only pays off with bfloat16 hardware (GPUs, AVX-512 BF16 or
AMX CPUs); the script prints whether this CPU has it. Run: ``python benchmarks/bench_precision.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_classify import DEFAULT_WORKDIR, ensure_checkpoint, ensure_clip, quiet_transformers

from xclip_cli.device import bf16_is_fast
from xclip_cli.labels import resolve_labels
from xclip_cli.options import ClassifyOptions
from xclip_cli.pipeline import load_frames, view_pixels
from xclip_cli.runner import XClipRunner

REPEAT = 5


def main() -> None:
    os.environ["XCLIP_CACHE_DIR"] = tempfile.mkdtemp(prefix="xclip-bench-cache-")
    quiet_transformers()
    model_dir = ensure_checkpoint(DEFAULT_WORKDIR)
    clip = ensure_clip(DEFAULT_WORKDIR, 10)
    labels = resolve_labels("kinetics400")
    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"bf16 units: {bf16_is_fast(torch.device('cpu'))}"
    )
    logits = {}
    for precision in ("fp32", "bf16"):
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu", precision=precision)
        started = time.perf_counter()
        text = runner.label_text_features(labels)
        text_seconds = time.perf_counter() - started
        pixels = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
        runner.video_logits(pixels, text)  # warm-up
        times = []
        for _ in range(REPEAT):
            started = time.perf_counter()
            logits[precision] = runner.video_logits(pixels, text)
            times.append(time.perf_counter() - started)
        print(
            f"{precision}: text side, 400 labels, cold {text_seconds:.2f} s; "
            f"video side median of {REPEAT} {statistics.median(times):.3f} s"
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
