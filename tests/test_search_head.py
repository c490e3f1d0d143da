"""The moment-search head (``model.head``, numpy) is X-CLIP's head: the same function as
transformers' prompt generator and scaled cosine, within float32's rounding on any CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import float64_head_logits, head_rounding_bound

from xclip_cli.errors import ModelLoadError
from xclip_cli.model.head import HeadWeights, head_logits
from xclip_cli.model.open import open_backend


def _features(runner: object, count: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vision side of ``count`` random videos and the text features of three prompts."""
    rng = np.random.default_rng(0)
    size = runner.preprocess.crop[0]  # type: ignore[attr-defined]
    pixels = rng.standard_normal((count, runner.num_frames, 3, size, size)).astype(np.float32)  # type: ignore[attr-defined]
    features = runner.video_features(pixels)  # type: ignore[attr-defined]
    text = runner.text_features(["a red screen", "white stripes", "a cat, a dog"])  # type: ignore[attr-defined]
    return features.embeds, features.patches, text


@pytest.fixture(scope="module")
def torch_runner(tiny_model_dir: Path) -> object:
    return open_backend(str(tiny_model_dir), "cpu", "fp32", "torch")


def test_the_rearranged_head_is_the_same_function(tiny_model_dir: Path, torch_runner: object) -> None:
    embeds, patches, text = _features(torch_runner)
    weights = torch_runner.head_weights()  # type: ignore[attr-defined]
    exact = float64_head_logits(tiny_model_dir, embeds, patches, text)
    ours = head_logits(weights, embeds.astype(np.float64), patches.astype(np.float64), text.astype(np.float64))
    # Both in float64 on the same inputs: they differ by float64 rounding, ~1e-16 relative per
    # operation over a few dozen operations; 1e-10 of the largest logit is a million times that,
    # and a wrong rearrangement (a head's keys mixed up, a layer skipped) moves logits ~0.1.
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-10 * np.abs(exact).max())


def test_float32_head_within_its_rounding_bound(tiny_model_dir: Path, torch_runner: object) -> None:
    embeds, patches, text = _features(torch_runner)
    weights = torch_runner.head_weights()  # type: ignore[attr-defined]
    exact = float64_head_logits(tiny_model_dir, embeds, patches, text)
    bound = head_rounding_bound(weights, embeds, patches, text, exact)
    assert 0 < bound < 1e-3  # the simulation ran: float32's errors are tiny next to the logits' spread
    ours = head_logits(weights, embeds, patches, text)
    assert ours.dtype == np.float32
    assert np.abs(ours - exact).max() <= bound
    # float16 patches (an index's default storage) go through the same arithmetic
    half = head_logits(weights, embeds, patches.astype(np.float16), text)
    assert half.dtype == np.float32 and half.shape == exact.shape


def test_a_wrong_head_is_caught_by_the_bound(tiny_model_dir: Path, torch_runner: object) -> None:
    """The bound is small enough to see a head that is only slightly wrong: one weight matrix of
    the second layer's attention off by 1%."""
    embeds, patches, text = _features(torch_runner)
    weights = torch_runner.head_weights()  # type: ignore[attr-defined]
    exact = float64_head_logits(tiny_model_dir, embeds, patches, text)
    bound = head_rounding_bound(weights, embeds, patches, text, exact)
    tensors = dict(weights.tensors)
    tensors["decoder.1.cross_attn.v_proj.weight"] = tensors["decoder.1.cross_attn.v_proj.weight"] * np.float32(1.01)
    wrong = HeadWeights(tensors, weights.heads, weights.layers, weights.activation, weights.vision_eps,
                        weights.text_eps, weights.logit_scale)  # fmt: skip
    assert np.abs(head_logits(wrong, embeds, patches, text) - exact).max() > 10 * bound


def test_head_weights_round_trip_and_the_onnx_backend_reads_them(
    tiny_model_dir: Path, torch_runner: object, onnx_ready: Path, tmp_path: Path
) -> None:
    """A prepared folder holds the head's weights (written at prepare time): the same numbers."""
    weights = torch_runner.head_weights()  # type: ignore[attr-defined]
    weights.save(tmp_path / "head.npz")
    loaded = HeadWeights.load(tmp_path / "head.npz")
    assert loaded.tensors.keys() == weights.tensors.keys() and loaded.heads == weights.heads
    assert all(np.array_equal(loaded.tensors[name], weights.tensors[name]) for name in weights.tensors)
    onnx = open_backend(str(tiny_model_dir), "cpu", "fp32", "onnx")
    embeds, patches, text = _features(torch_runner)
    ours, theirs = head_logits(onnx.head_weights(), embeds, patches, text), head_logits(weights, embeds, patches, text)
    np.testing.assert_array_equal(ours, theirs)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match=r"bad\.npz: cannot read the head's weights"):
        HeadWeights.load(tmp_path / "bad.npz")
