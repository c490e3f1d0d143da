"""The ONNX Runtime engine: exported once per checkpoint, equal to transformers, never stale."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import invoke
from test_equivalence import LABELS, reference_logits

from xclip_cli.classify import classify_videos
from xclip_cli.errors import ExitCode
from xclip_cli.labels import inline_labelset
from xclip_cli.onnx_engine import OnnxRunner, is_prepared, prepare, prepared_folder
from xclip_cli.options import ClassifyOptions
from xclip_cli.runner import XClipRunner

pytest.importorskip("onnxruntime")
LOGIT_TOLERANCE = 1e-3  # ONNX Runtime's kernels against torch's, fp32
PROBABILITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module: the tiny checkpoint is exported once (about 20 s)."""
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture
def cached(onnx_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XCLIP_CACHE_DIR", str(onnx_cache))
    return onnx_cache


@pytest.fixture
def engines(tiny_model_dir: Path, cached: Path) -> tuple[XClipRunner, OnnxRunner]:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    return runner, OnnxRunner.load(runner)


def random_pixels(videos: int, runner: XClipRunner) -> torch.Tensor:
    generator = torch.Generator().manual_seed(videos)
    return torch.randn(videos, runner.num_frames, 3, runner.image_size, runner.image_size, generator=generator)


@pytest.mark.parametrize("labels", [LABELS[:1], LABELS], ids=["1-label", "5-labels"])
@pytest.mark.parametrize("videos", [1, 3])
def test_logits_equal_transformers(
    tiny_model_dir: Path, engines: tuple[XClipRunner, OnnxRunner], labels: list[str], videos: int
) -> None:
    _, onnx = engines
    pixel_values = random_pixels(videos, onnx.torch_runner)
    text = onnx.label_text_features(inline_labelset(", ".join(labels) + ","))
    ours = onnx.video_logits(pixel_values, text)
    expected = reference_logits(tiny_model_dir, labels, pixel_values)
    assert ours.shape == expected.shape == (videos, len(labels))
    torch.testing.assert_close(ours, expected, atol=LOGIT_TOLERANCE, rtol=0)
    torch.testing.assert_close(ours.softmax(-1), expected.softmax(-1), atol=PROBABILITY_TOLERANCE, rtol=0)


def test_classify_results_equal_the_torch_backend(engines: tuple[XClipRunner, OnnxRunner], clip_dir: Path) -> None:
    runner, onnx = engines
    labelset = inline_labelset("cooking, dancing, skateboarding, surfing")
    paths = [str(clip_dir / "a.mp4"), str(clip_dir / "b.mp4"), str(clip_dir / "missing.mp4")]
    options = ClassifyOptions(top_k=4, clips=2, crops=3, batch_size=2)  # multi-view, batched
    on_torch = list(classify_videos(runner, paths, labelset, options))
    on_onnx = list(classify_videos(onnx, paths, labelset, options))
    for a, b in zip(on_torch, on_onnx, strict=True):
        assert (a.path, a.status, a.views, a.timestamps) == (b.path, b.status, b.views, b.timestamps)
        assert [p.label for p in a.predictions] == [p.label for p in b.predictions]
        assert [p.probability for p in b.predictions] == pytest.approx(
            [p.probability for p in a.predictions], abs=PROBABILITY_TOLERANCE
        )


def test_a_changed_checkpoint_is_exported_anew(tiny_model_dir: Path, tmp_path: Path, cached: Path) -> None:
    from safetensors.torch import load_file, save_file

    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    first = prepare(runner)
    edited = shutil.copytree(tiny_model_dir, tmp_path / "edited")
    weights = load_file(edited / "model.safetensors")
    name = next(key for key in weights if "prompts_generator" in key and key.endswith("weight"))
    weights[name] = weights[name] + 0.01  # one head weight: the graphs must not be reused
    save_file(weights, edited / "model.safetensors", metadata={"format": "pt"})
    changed = XClipRunner.from_pretrained(str(edited), device="cpu")
    assert prepared_folder(changed) != first and not is_prepared(changed)


def test_a_damaged_entry_is_rebuilt_with_a_warning(engines: tuple[XClipRunner, OnnxRunner]) -> None:
    runner, onnx = engines
    with open(onnx.folder / "head.onnx", "r+b") as handle:
        handle.truncate(100)  # a disk that filled up, a copy cut short
    said: list[str] = []
    folder = prepare(runner, said.append)
    assert folder == onnx.folder and is_prepared(runner)
    assert said[0] == f"xclip: warning: {folder}: damaged ONNX cache entry, exporting again"
    assert json.loads((folder / "manifest.json").read_text())["sizes"]["head.onnx"] > 100


def test_cli_prepare_then_onnx_and_auto_equal_torch(tiny_model_dir: Path, clip_dir: Path, cached: Path) -> None:
    prepared = invoke(["models", "prepare", "--model", str(tiny_model_dir)])
    assert prepared.exit_code == ExitCode.OK, prepared.stderr
    assert prepared.stderr.startswith(f"xclip: {tiny_model_dir} is prepared: {cached / 'onnx'}")
    base = ["classify", str(clip_dir / "a.mp4"), "-m", str(tiny_model_dir), "-l", "cooking, dancing", "-f", "json"]
    runs = {backend: invoke([*base, "--backend", backend]) for backend in ("torch", "onnx", "auto")}
    records = {backend: json.loads(run.stdout)[0] for backend, run in runs.items()}
    for backend in ("onnx", "auto"):
        assert runs[backend].exit_code == ExitCode.OK, runs[backend].stderr
        got, expected = records[backend], records["torch"]
        assert {k: v for k, v in got.items() if k != "predictions"} == {
            k: v for k, v in expected.items() if k != "predictions"
        }
        assert [p["probability"] for p in got["predictions"]] == pytest.approx(
            [p["probability"] for p in expected["predictions"]], abs=PROBABILITY_TOLERANCE
        )


def test_onnx_refuses_what_it_cannot_run(tiny_model_dir: Path, clip_dir: Path, cached: Path) -> None:
    base = ["classify", str(clip_dir / "a.mp4"), "-m", str(tiny_model_dir), "-l", "a, b", "--backend", "onnx"]
    result = invoke([*base, "--precision", "bf16"])
    assert result.exit_code == ExitCode.USAGE
    assert "--backend onnx runs fp32 or int8 on the CPU" in result.stderr
    unknown = invoke(["classify", str(clip_dir / "a.mp4"), "-m", str(tiny_model_dir), "--backend", "tpu"])
    assert (
        unknown.exit_code == ExitCode.USAGE and "--backend 'tpu': expected one of auto, torch, onnx" in unknown.stderr
    )


def test_int8_is_onnx_only_lossy_and_named_in_the_output(tiny_model_dir: Path, clip_dir: Path, cached: Path) -> None:
    base = ["classify", str(clip_dir / "a.mp4"), "-m", str(tiny_model_dir), "-l", "cooking, dancing", "-f", "json"]
    refused = invoke([*base, "--precision", "int8", "--backend", "torch"])
    assert refused.exit_code == ExitCode.USAGE and "--precision int8 runs on ONNX Runtime" in refused.stderr
    int8 = invoke([*base, "--precision", "int8"])  # auto: int8 needs ONNX Runtime, prepared on demand
    assert int8.exit_code == ExitCode.OK, int8.stderr
    (record,) = json.loads(int8.stdout)
    assert record["precision"] == "int8" and len(record["predictions"]) == 2
    assert sum(p["probability"] for p in record["predictions"]) == pytest.approx(1.0, abs=1e-5)


def test_int8_features_never_mix_with_fp32_in_an_index(engines: tuple[XClipRunner, OnnxRunner]) -> None:
    runner, onnx = engines
    int8 = OnnxRunner.load(runner, int8=True)
    assert int8.precision == "int8" and onnx.precision == "fp32"
    assert int8.vision_fingerprint() != onnx.vision_fingerprint() == runner.vision_fingerprint()
    pixels = random_pixels(2, runner)
    assert int8.video_features(pixels).embeds.shape == onnx.video_features(pixels).embeds.shape
