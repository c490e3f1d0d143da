"""Numerical equivalence with transformers: XCLIPProcessor + XCLIPModel.logits_per_video.

Random weights give meaningless labels; these tests prove that the split forward, the text
cache, the ensembling plumbing and the numpy/Pillow preprocessing compute what transformers computes.

Every tolerance is derived from float32's arithmetic for the model and inputs at hand, so it
holds on any x86 CPU (``helpers.float32_rounding_bound``): two float32 forwards (ours and
transformers', or one batch size and another) are each within the bound of transformers'
float64 forward, so within twice it of each other. On the tiny checkpoint that comes to 3e-4 to
6e-4 of logits between -6 and 12 (logit scale e^4: 54.6 x cosines), against 1e-6 to 6e-6
measured. A real bug moves those logits far more, on the same inputs: frames reversed 3e-2,
a logit scale 1% off 8e-2, the patch features' layer norm left out 0.3, the prompt generator's
or the vision encoder's layers swapped 0.3 and 1.1, the text pooled one token early 7: 50x the
bound and more.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import (
    LABELS,
    PIXEL_ROUNDING,
    UNIT_ROUNDOFF,
    assert_within_float32_rounding,
    float32_rounding_bound,
    float64_logits,
    probability_tolerance,
    random_pixels,
    reference_logits,
    save_full_size_checkpoint,
    save_tiny_checkpoint,
    write_video,
)
from transformers import XCLIPModel, XCLIPProcessor

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import inline_labelset, parse_labelset
from xclip_cli.media.preprocess import PreprocessConfig, preprocess_frame
from xclip_cli.model.text import ensemble_text_embeddings
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions


@pytest.mark.parametrize("labels", [LABELS[:1], LABELS], ids=["1-label", "5-labels"])
@pytest.mark.parametrize("videos", [1, 3])
def test_logits_equal_transformers(
    tiny_model_dir: Path, random_inputs_bound: float, labels: list[str], videos: int
) -> None:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    pixel_values = random_pixels(videos, runner)
    ours = runner.video_logits(pixel_values, runner.label_text_features(inline_labelset(", ".join(labels) + ",")))
    expected = reference_logits(tiny_model_dir, labels, pixel_values)
    assert ours.shape == (videos, len(labels))
    assert_within_float32_rounding(ours, expected, 2 * random_inputs_bound)  # two float32 forwards


def test_logits_equal_transformers_after_cache_round_trip(tiny_model_dir: Path, random_inputs_bound: float) -> None:
    labelset = inline_labelset(", ".join(LABELS))
    first = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    first.label_text_features(labelset)  # computes and stores on disk
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    pixel_values = random_pixels(2, runner)
    ours = runner.video_logits(pixel_values, runner.label_text_features(labelset))
    assert runner.text_encoder_calls == 0
    expected = reference_logits(tiny_model_dir, LABELS, pixel_values)
    assert_within_float32_rounding(ours, expected, 2 * random_inputs_bound)


def test_templates_and_synonyms_are_ensembled_before_the_prompt_generator(tiny_model_dir: Path) -> None:
    labelset = parse_labelset(
        {
            "templates": ["a video of {}", "{}", "a person {}"],
            "labels": ["cooking", {"name": "dancing", "prompts": ["dancing", "doing a dance"]}, "surfing"],
        },
        origin="test",
    )
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    pixel_values = random_pixels(2, runner, seed=1)
    ours = runner.video_logits(pixel_values, runner.label_text_features(labelset))

    # Reference: transformers' own forward, with the text projection's output replaced by
    # the per-label ensemble of get_text_features over each label's texts.
    texts_per_label = labelset.texts_per_label()
    names = list(labelset.names)
    expected = reference_logits(tiny_model_dir, names, pixel_values, texts_per_label)
    assert [len(texts) for texts in texts_per_label] == [3, 6, 3]
    bound = float32_rounding_bound(tiny_model_dir, names, pixel_values, texts_per_label=texts_per_label)
    assert_within_float32_rounding(ours, expected, 2 * bound)


def test_ensemble_of_one_prompt_is_the_prompt_itself() -> None:
    embedding = np.random.default_rng(0).standard_normal((1, 16), dtype=np.float32) * 3
    assert np.array_equal(ensemble_text_embeddings(embedding), embedding[0])
    pair = np.stack([embedding[0], 2 * embedding[0]])
    # Same direction: the direction is kept, the length is the mean length. Both sides round the
    # exact 1.5x to float32 once (u each); the ensemble's float64 arithmetic adds ~1e-16.
    np.testing.assert_allclose(ensemble_text_embeddings(pair), 1.5 * embedding[0], rtol=3 * UNIT_ROUNDOFF)


@pytest.mark.parametrize(("height", "width"), [(48, 64), (64, 48), (30, 30), (21, 17), (240, 427), (719, 1280)])
@pytest.mark.parametrize("resample", [2, 3], ids=["bilinear", "bicubic"])
@pytest.mark.parametrize("legacy", [False, True], ids=["processor_config", "preprocessor_config"])
def test_pixels_equal_the_checkpoint_image_processor(
    tmp_path_factory: pytest.TempPathFactory, height: int, width: int, resample: int, legacy: bool
) -> None:
    processor, runner_config = _processor_and_config(tmp_path_factory, resample, legacy)
    rng = np.random.default_rng(height * width)
    # Smooth content plus noise, like real frames after compression.
    base = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)
    frames = [
        np.clip(base[:height, :width] + rng.integers(-20, 21, size=(height, width, 3)), 0, 255).astype(np.uint8)
        for _ in range(3)
    ]
    expected = processor(videos=frames, return_tensors="np")["pixel_values"][0]
    ours = np.stack([preprocess_frame(frame, runner_config) for frame in frames])
    assert ours.shape == expected.shape and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= PIXEL_ROUNDING


_PROCESSORS: dict[tuple[int, bool], tuple[XCLIPProcessor, PreprocessConfig]] = {}


def _processor_and_config(
    factory: pytest.TempPathFactory, resample: int, legacy: bool
) -> tuple[XCLIPProcessor, PreprocessConfig]:
    """transformers' processor and our settings, both read from one saved checkpoint."""
    key = (resample, legacy)
    if key not in _PROCESSORS:
        folder = save_tiny_checkpoint(factory.mktemp("proc"), legacy_preprocessor=legacy, resample=resample)
        _PROCESSORS[key] = (XCLIPProcessor.from_pretrained(folder), _preprocess_config(folder))
    return _PROCESSORS[key]


def _preprocess_config(folder: Path) -> PreprocessConfig:
    return XClipRunner.from_pretrained(str(folder), device="cpu").preprocess


def test_legacy_preprocessor_config_is_read(tmp_path: Path) -> None:
    folder = save_tiny_checkpoint(tmp_path / "legacy", legacy_preprocessor=True, resample=3)
    assert (folder / "preprocessor_config.json").exists()
    config = _preprocess_config(folder)
    assert config.shortest_edge == 30 and config.crop == (30, 30) and config.resample == 3
    assert config.mean == pytest.approx((0.485, 0.456, 0.406))


def test_num_frames_comes_from_the_checkpoint(tmp_path: Path) -> None:
    folder = save_tiny_checkpoint(tmp_path / "sixteen", num_frames=16)
    runner = XClipRunner.from_pretrained(str(folder), device="cpu")
    assert runner.num_frames == 16
    clip = write_video(tmp_path / "clip.mp4", num_frames=40)
    (result,) = classify_videos(runner, [str(clip)], inline_labelset("a, b"))
    assert len(result.timestamps) == 16


def test_end_to_end_probabilities_match_the_transformers_recipe(tiny_model_dir: Path, tmp_path: Path) -> None:
    # The transformers docs recipe on the same video: decode every frame, take X-CLIP's
    # segment centres, XCLIPProcessor, model(**inputs).
    clip = write_video(tmp_path / "clip.mp4", num_frames=50, size=(80, 60))
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    (result,) = classify_videos(runner, [str(clip)], inline_labelset(", ".join(LABELS)), ClassifyOptions(top_k=5))

    with av.open(str(clip)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    indices = [int((i + 0.5) * len(frames) / 8) for i in range(8)]
    processor = XCLIPProcessor.from_pretrained(tiny_model_dir)
    model = XCLIPModel.from_pretrained(tiny_model_dir).eval()
    inputs = processor(text=LABELS, videos=[frames[i] for i in indices], return_tensors="pt", padding=True)
    with torch.inference_mode():
        logits = model(**inputs).logits_per_video
    expected_logits, expected = logits[0].numpy(), logits.softmax(dim=-1)[0].numpy()
    assert result.timestamps == pytest.approx([i / 12 for i in indices])

    # The same frames, preprocessed by each within float32 rounding; their pixels' effect on the
    # logits is computed exactly (float64), each side's float32 forward is within the bound.
    pixels = np.concatenate([view_pixels(load_frames(runner, str(clip), ClassifyOptions())), inputs["pixel_values"]])
    assert np.abs(pixels[0] - pixels[1]).max() <= PIXEL_ROUNDING
    exact = float64_logits(tiny_model_dir, LABELS, pixels)
    tolerance = 2 * float32_rounding_bound(tiny_model_dir, LABELS, pixels, exact) + np.abs(exact[0] - exact[1]).max()
    ours = {p.label: (p.logit, p.probability) for p in result.predictions}
    ours_logits, ours_p = (np.array([ours[label][i] for label in LABELS]) for i in (0, 1))
    assert np.abs(ours_logits - expected_logits).max() <= tolerance
    assert np.all(np.abs(ours_p - expected) <= probability_tolerance(expected, expected_logits, tolerance))


@pytest.mark.slow
def test_full_size_model_logits_equal_transformers(tmp_path: Path) -> None:
    """The base-patch32 shape (XCLIPConfig()), random weights: our split forward in float32 against
    transformers' ``logits_per_video`` in float64 (about a minute on 2 cores).

    Why the bound holds on any x86 CPU: each float32 operation errs by at most a known amount
    whatever its summation order, blocking, FMA use or thread split (sqrt(k)·u·Σ|terms| for a sum
    of k terms, u = 2^-24; ``helpers.simulated_float32``). The float64 forward with such an error
    added at every operation, with random signs, shows how far float32 can drift for this model
    and these inputs; ROUNDING_SAFETY (3) times that covers unlucky signs and the spread of a
    one-draw estimate. It comes to ~3e-4 here, while oneDNN/MKL's float32 forward is ~1e-6 off
    (1 or 2 threads, AVX2 or SSE4.1 kernels): a ratio near 0.004, so kernels 100x sloppier pass.

    Why it still catches bugs: logits are 14.3 x cosines (±0.7 here); two layers in the wrong
    order, a logit scale 10% off or a prompt pooled at the wrong token moves them by 2e-2 to
    0.5, 80x and more above the bound; even the patch features' layer norm left out, which the
    prompt generator's own layer norm mostly undoes, moves them by 1e-3, 4x the bound.
    """
    folder = save_full_size_checkpoint(tmp_path)
    runner = XClipRunner.from_pretrained(str(folder), device="cpu")
    pixel_values = random_pixels(2, runner)
    ours = runner.video_logits(pixel_values, runner.label_text_features(inline_labelset(", ".join(LABELS))))
    exact = float64_logits(folder, LABELS, pixel_values)
    assert_within_float32_rounding(ours, exact, float32_rounding_bound(folder, LABELS, pixel_values, exact))


def test_batched_and_prefetched_videos_give_the_same_results_as_one_at_a_time(
    tiny_model_dir: Path, clip_dir: Path
) -> None:
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    paths = [str(clip_dir / "a.mp4"), str(clip_dir / "missing.mp4"), str(clip_dir / "b.mp4"), str(clip_dir / "a.mp4")]
    labels = inline_labelset(", ".join(LABELS))
    single = list(classify_videos(runner, paths, labels, ClassifyOptions(batch_size=1)))
    batched = list(classify_videos(runner, paths, labels, ClassifyOptions(batch_size=3, workers=2)))
    assert [r.path for r in batched] == paths  # order kept around the failure
    assert [r.ok for r in batched] == [True, False, True, True]
    # Other batch sizes may take other kernels: two float32 forwards of the same pixels.
    pixels = np.concatenate([view_pixels(load_frames(runner, paths[i], ClassifyOptions())) for i in (0, 2)])
    tolerance = 2 * float32_rounding_bound(tiny_model_dir, LABELS, pixels)
    for one, many in zip(single, batched, strict=True):
        # Each ranked by probability; labels only swap places within the tolerance.
        assert sorted(p.label for p in one.predictions) == sorted(p.label for p in many.predictions)
        theirs = {p.label: p.logit for p in many.predictions}
        for prediction in one.predictions:
            assert abs(prediction.logit - theirs[prediction.label]) <= tolerance


def test_bf16_is_opt_in_close_to_fp32_and_cached_apart(tiny_model_dir: Path, isolated_dirs: Path) -> None:
    labels = inline_labelset(", ".join(LABELS))
    exact = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    assert exact.precision == "fp32"
    fast = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu", precision="bf16")
    pixel_values = random_pixels(2, exact)
    reference = exact.video_logits(pixel_values, exact.label_text_features(labels))
    lossy = fast.video_logits(pixel_values, fast.label_text_features(labels))
    assert lossy.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: close, not equal. Measured in cosine units (logits
    # divided by the logit scale), since a trained checkpoint's larger scale magnifies drift.
    cosine_drift = np.abs(lossy - reference).max() / exact.model.logit_scale.exp().item()
    assert 0 < cosine_drift < 0.15
    assert exact.fingerprint() != fast.fingerprint()
    assert len(list((isolated_dirs / "text-features").glob("*.npy"))) == 2
