"""The benchmark scripts run end to end on a tiny checkpoint (timings meaningless, plumbing real)."""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path

import pytest
from helpers import write_video

from xclip_cli.labels import inline_labelset
from xclip_cli.model.torch.runner import XClipRunner

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

# Clusters, fresh processes and ONNX exports: seconds each (make test-heavy, run by .ci/run).
pytestmark = pytest.mark.heavy


@pytest.mark.parametrize("script", ["bench_classify", "bench_scan"])
def test_the_main_comparisons_run_in_smoke_mode(
    script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make bench`'s two scripts end to end: tiny checkpoint, small clip, one interleaved round."""
    module = importlib.import_module(script)
    module.main(["--smoke", "--workdir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "recipe, per video" in printed and "ratios (median of per-round ratios, min-max):" in printed
    first_ratio = printed.split("ratios (median of per-round ratios, min-max):\n")[1].splitlines()[0]
    assert re.match(r"  recipe / .* \d+\.\d\dx", first_ratio), first_ratio


def test_bench_timeline_compares_one_pass_with_per_window(tiny_model_dir: Path, tmp_path: Path) -> None:
    import bench_timeline

    clip = write_video(tmp_path / "clip.mp4", num_frames=60, rate=6)
    long_clip = bench_timeline.ensure_long_clip(clip, 3)
    assert long_clip.exists()
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    lines = bench_timeline.one_pass_vs_per_window(runner, clip)
    assert any("per-window / one pass" in line for line in lines)


def test_bench_onnx_compares_the_backends(
    tiny_model_dir: Path, tmp_path: Path, isolated_dirs: Path, prepared_onnx: Path
) -> None:
    pytest.importorskip("onnxruntime")
    import bench_onnx

    from xclip_cli.model.onnx.export import prepare
    from xclip_cli.model.onnx.runner import OnnxRunner

    shutil.copytree(prepared_onnx, isolated_dirs / "onnx")  # int8 is added to the entry: a copy
    clip = write_video(tmp_path / "clip.mp4", num_frames=30)
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    onnx = OnnxRunner.open(prepare(runner), runner.model_id)
    lines = bench_onnx.compare(runner, onnx, clip, videos=2, repeat=1)
    assert any(line.startswith("vision side per video") and "torch/onnx" in line for line in lines)
    assert lines[-3].startswith("logit drift onnx vs torch: max ")
    assert lines[-1].startswith("fp32 error, onnx  vs transformers in float64: max ")
    pixels = bench_onnx.view_pixels(bench_onnx.load_frames(onnx, str(clip), bench_onnx.ClassifyOptions()))
    settings = bench_onnx.session_settings(onnx.folder, pixels, repeat=1)
    assert len(settings) == 6 and all(line.endswith("s per video") for line in settings)
    load = bench_onnx.session_load(onnx.folder, onnx.model_id, pixels, repeat=1)
    assert load[0].startswith("session load (fp32") and "prepacking pays after" in load[1]
    int8_runner = OnnxRunner.open(prepare(runner, int8=True), runner.model_id, int8=True)
    load = bench_onnx.session_load(int8_runner.folder, onnx.model_id, pixels, repeat=1, int8=True)
    assert load[0].startswith("session load (int8") and load[1].startswith("vision graph per video (int8)")
    int8 = bench_onnx.compare_int8(onnx, int8_runner, clip, repeat=1)
    assert "fp32/int8" in int8[0] and "same top-5 set" in int8[1]


def test_bench_sampling_compares_both_samplings(tiny_model_dir: Path, tmp_path: Path) -> None:
    import bench_sampling

    clip = write_video(tmp_path / "clip.mp4", num_frames=48, gop=6)
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    lines = bench_sampling.measure_clip(runner, inline_labelset("cooking, dancing"), clip, repeat=1, videos=2)
    assert any("decode only" in line and "exact / keyframes" in line for line in lines)
    assert any("scan path / forward" in line for line in lines)
    assert any("8 of 8 substitutes" in line for line in lines), lines


def test_bench_limit_sets_the_engines_beside_the_probe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The probe, each engine's share of it, and ONNX Runtime's profile, whose matrix products
    (counted from the shapes it records) are the work torch's flop counter counts: the rate it
    prints is over the same operations."""
    pytest.importorskip("onnxruntime")
    import bench_limit

    bench_limit.main(["--smoke", "--workdir", str(tmp_path)])
    printed = capsys.readouterr().out
    for engine in ("torch eager fp32", "ONNX Runtime fp32", "ONNX Runtime int8"):
        assert re.search(rf"^{engine} +best +[\d.]+ GFLOP/s .* of the probe: best +[\d.]+%", printed, re.M), printed
    counted = re.search(r"\(([\d.e+-]+) GFLOP a run; torch's count of the vision side ([\d.e+-]+)\)", printed)
    assert counted, printed
    profile, torch_count = float(counted[1]), float(counted[2])
    # Both are printed to 3 significant digits (each off by at most 0.5%): equal counts print within 1%.
    assert abs(profile - torch_count) <= 0.01 * torch_count, (profile, torch_count)


def test_bench_watch_times_arrivals_to_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import bench_watch

    bench_watch.main(["--smoke", "--burst", "2", "--settle", "0.5", "--workdir", str(tmp_path)])
    printed = capsys.readouterr().out
    assert re.search(r"^one file at a time +median +[\d.]+ s", printed, re.M), printed
    assert re.search(r"^a burst of 2 +median", printed, re.M) and "exit code after SIGTERM: 0" in printed
