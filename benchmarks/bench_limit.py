"""The vision side against this machine's limit: GFLOP/s and a percentage of an fp32 GEMM probe.

The probe is ONNX Runtime's MatMul of X-CLIP's MLP shape (400 x 768 by 768 x 3072: 8 frames of
50 tokens into the MLP's hidden width), fp32, with the engine's session settings: what one
large matrix product reaches on this CPU, the ceiling a transformer's vision side can
approach. The vision side's work is counted once with ``torch.utils.flop_counter``
(multiply-adds of the matrix products, convolutions and attention, x2) for one video; each
round runs the probe, then torch eager fp32, ONNX Runtime fp32 and ONNX Runtime int8 on one
video, so load from other processes hits all alike. Reported per engine: GFLOP/s, best and
median over the rounds, and its percentage of the probe: best (the engine's best round against
the probe's best) and the median and range of each round against the same round's probe (int8's GFLOP/s count
the same fp32 work: how fast the same answer arrives, not the int8 units' own rate).

Then ONNX Runtime's own profile of the prepared fp32 vision graph: each operator type's share
of the time, and the rate its matrix products reach: where the time that is not at the probe's
rate goes.

    python benchmarks/bench_limit.py [--repeat 7] [--quick] [--smoke] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import add_bench_arguments, bench_session, log

from xclip_cli.jobs.classify import load_frames, view_pixels
from xclip_cli.model.onnx.export import prepare
from xclip_cli.model.onnx.runner import OnnxRunner, open_session, session_options
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions

PROBE_SHAPE = (400, 768, 3072)  # rows, inner, columns
PROBE_CALLS = 20  # one probe measurement: this many products back to back
MATRIX_OPS = (
    *("MatMul", "FusedMatMul", "Gemm", "FusedGemm", "Conv", "NchwcConv"),
    *("MatMulInteger", "DynamicQuantizeMatMul"),  # int8
)


def probe_graph(folder: Path) -> Path:
    """A one-node ONNX graph: ``A @ B`` with B a constant, the probe's shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rows, inner, columns = PROBE_SHAPE
    weights = np.random.default_rng(0).standard_normal((inner, columns), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "probe",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [rows, inner])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [rows, columns])],
        [numpy_helper.from_array(weights, "b")],
    )
    path = folder / "probe.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def vision_flops(runner: XClipRunner, pixels: np.ndarray) -> int:
    """Floating-point operations of one video's vision side, as torch's flop counter counts them
    (with attention's CPU kernel added: the counter knows only the GPU ones)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def attention(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return int(sdpa_flop_count(query, key, value))

    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_attention: attention})
    with counter, torch.inference_mode():
        runner.vision_side(torch.from_numpy(pixels))
    return int(counter.get_total_flops())


def rates(
    probe: Callable[[], Any], engines: dict[str, Callable[[], Any]], flops: int, repeat: int
) -> tuple[list[float], dict[str, list[float]], dict[str, list[float]]]:
    """Interleaved rounds (one unrecorded first): the probe's GFLOP/s, each engine's GFLOP/s,
    and each engine's percentage of the same round's probe."""
    probe_flops = 2 * PROBE_SHAPE[0] * PROBE_SHAPE[1] * PROBE_SHAPE[2] * PROBE_CALLS
    probe_rates: list[float] = []
    engine_rates: dict[str, list[float]] = defaultdict(list)
    percent: dict[str, list[float]] = defaultdict(list)
    for round_index in range(repeat + 1):
        started = time.perf_counter()
        for _ in range(PROBE_CALLS):
            probe()
        probe_rate = probe_flops / (time.perf_counter() - started) / 1e9
        measured = {}
        for name, run in engines.items():
            started = time.perf_counter()
            run()
            measured[name] = flops / (time.perf_counter() - started) / 1e9
        if round_index == 0:
            continue  # allocations, file-cache misses
        probe_rates.append(probe_rate)
        for name, rate in measured.items():
            engine_rates[name].append(rate)
            percent[name].append(100 * rate / probe_rate)
    return probe_rates, engine_rates, percent


def profile(folder: Path, pixels: np.ndarray, work: Path, runs: int, flops: int) -> list[str]:
    """ONNX Runtime's profile of the prepared fp32 vision graph (its first run left out):
    operator types by share of the time, and the matrix products' rate. Their operations are
    counted from the shapes in the profile, and set beside torch's count (``flops``): the two
    counts agreeing shows the profile's rate is computed over the same work."""
    import onnxruntime

    options = session_options()  # the engine's
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "vision-profile")
    session = onnxruntime.InferenceSession(str(folder / "vision.onnx"), options, providers=["CPUExecutionProvider"])
    inputs = {"pixel_values": np.ascontiguousarray(pixels)}
    for _ in range(runs + 1):
        session.run(None, inputs)
    events = json.loads(Path(session.end_profiling()).read_text())
    run_ends = sorted(event["ts"] + event["dur"] for event in events if event.get("name") == "model_run")
    seconds: dict[str, float] = defaultdict(float)
    matrix_flops = 0.0
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if event["ts"] < run_ends[0]:
            continue  # the first run
        op = event["args"].get("op_name", "?")
        seconds[op] += event["dur"] / 1e6 / runs
        if op in MATRIX_OPS:
            matrix_flops += node_flops(op, event["args"]) / runs
    total = sum(seconds.values())
    matrix_seconds = sum(seconds[op] for op in MATRIX_OPS if op in seconds)
    lines = [
        f"ONNX Runtime profile, fp32 vision graph, mean of {runs} runs: {total:.3f} s in operators",
        f"  matrix products ({', '.join(op for op in MATRIX_OPS if op in seconds)}): "
        f"{100 * matrix_seconds / total:.0f}% of it, at {matrix_flops / matrix_seconds / 1e9:.0f} GFLOP/s "
        f"({matrix_flops / 1e9:.3g} GFLOP a run; torch's count of the vision side {flops / 1e9:.3g})",
    ]
    for op, spent in sorted(seconds.items(), key=lambda item: -item[1])[:10]:
        lines.append(f"  {op:<28} {spent * 1000:8.1f} ms  {100 * spent / total:5.1f}%")
    return lines


def node_flops(op: str, args: dict[str, Any]) -> float:
    """A matrix product's operations from the shapes in its profile event: 2 x outputs x the
    length of each output's dot product (the first input's last axis; a convolution's kernel)."""
    inputs = [next(iter(item.values())) for item in args.get("input_type_shape", [])]
    outputs = [next(iter(item.values())) for item in args.get("output_type_shape", [])]
    if not inputs or not outputs:
        return 0.0
    per_output = int(np.prod(inputs[1][1:])) if op in ("Conv", "NchwcConv") else inputs[0][-1]
    return 2.0 * float(np.prod(outputs[0])) * per_output


def summary(name: str, values: list[float], unit: str) -> str:
    return f"{name:<24} best {max(values):6.1f}{unit}  median {statistics.median(values):6.1f}{unit}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_arguments(parser, repeat=7)
    args = parser.parse_args(argv)
    with bench_session(args) as bench:
        model_dir, clip = bench.checkpoint(), bench.clip(10)
        runner = XClipRunner.from_pretrained(str(model_dir), device="cpu")
        log("preparing the ONNX graphs (fp32 and int8, into the run's scratch cache) ...")
        folder = prepare(runner, int8=True)
        fp32, int8 = OnnxRunner.open(folder, runner.model_id), OnnxRunner.open(folder, runner.model_id, int8=True)
        pixels = np.ascontiguousarray(view_pixels(load_frames(fp32, str(clip), ClassifyOptions()))[:1])
        flops = vision_flops(runner, pixels)
        probe = open_session(probe_graph(folder.parent))
        probe_input = {"a": np.random.default_rng(1).standard_normal(PROBE_SHAPE[:2], dtype=np.float32)}
        engines = {
            "torch eager fp32": lambda: runner.video_features(pixels),
            "ONNX Runtime fp32": lambda: fp32.video_features(pixels),
            "ONNX Runtime int8": lambda: int8.video_features(pixels),
        }
        log(f"{bench.repeat} interleaved round(s): probe, then each engine on one video ...")
        probe_rates, engine_rates, percent = rates(lambda: probe.run(None, probe_input), engines, flops, bench.repeat)
        profile_lines = profile(folder, pixels, folder.parent, max(1, bench.repeat // 2), flops)
    print(f"\n=== vision side against this machine's limit, {bench.repeat} interleaved round(s) ===")
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; vision side {flops / 1e9:.1f} GFLOP per video")
    rows, inner, columns = PROBE_SHAPE
    print(summary(f"probe {rows}x{inner}x{columns}", probe_rates, " GFLOP/s"))
    for name in engines:
        print(
            summary(name, engine_rates[name], " GFLOP/s")
            + f"   of the probe: best {100 * max(engine_rates[name]) / max(probe_rates):5.1f}%  "
            f"median {statistics.median(percent[name]):5.1f}% "
            f"(range {min(percent[name]):.0f}-{max(percent[name]):.0f}%)"
        )
    for line in profile_lines:
        print(line)


if __name__ == "__main__":
    main()
