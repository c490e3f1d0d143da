"""classify_videos against the transformers docs recipe the benchmarks time (benchmarks/recipe.py).

The benchmarks compare speed only; that both sides compute the same answer is checked here, on
the benchmarks' own kind of clip (H.264 with B-frames and one keyframe every 250 frames, so our
planned seeks and the recipe's decode-from-the-start must meet on the same frames), with the
400 Kinetics labels and the real CLIP tokenizer. A tiny checkpoint suffices: this is plumbing
(frames, preprocessing, label order, text cache, the model split); the full-size numerics are
tests/test_equivalence.py's and tests/test_onnx.py's slow tests.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from helpers import PIXEL_ROUNDING, float32_rounding_bound, float64_logits, probability_tolerance

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import resolve_labels
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from common import SMOKE_SIZE, write_synthetic_clip
from recipe import RecipeResult, load_recipe, run_recipe


class Agreement(NamedTuple):
    clip: Path
    recipe: RecipeResult
    runner: XClipRunner
    pixels: np.ndarray  # ours (view_pixels of our decoding), then the recipe's: 2 x T x 3 x H x W
    split_tolerance: float  # the split forward against model(**inputs), the same pixels
    tolerance: float  # end to end: the pixels differ too


@pytest.fixture(scope="module")
def agreement(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Agreement:
    """Both sides on the benchmark's clip, and the logit tolerances derived for them.

    Each float32 forward (ours, the recipe's) is within ``float32_rounding_bound`` of
    transformers' float64 forward on its own pixels (the bound is taken over both pixel sets),
    so the two are within twice it of each other on the same pixels; end to end, plus the exact
    (float64) change that the preprocessings' rounding difference (within PIXEL_ROUNDING) makes.
    """
    clip = tmp_path_factory.mktemp("agreement") / "synthetic.mp4"
    write_synthetic_clip(clip, seconds=3, sliced=False, size=SMOKE_SIZE)  # 90 frames, one keyframe
    model, processor = load_recipe(tiny_model_dir)
    names = list(resolve_labels("kinetics400").names)
    recipe = run_recipe(model, processor, clip, names)
    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    pixels = np.concatenate([view_pixels(load_frames(runner, str(clip), ClassifyOptions())), recipe.pixel_values])
    exact = float64_logits(tiny_model_dir, names, pixels)
    split = 2 * float32_rounding_bound(tiny_model_dir, names, pixels, exact)
    return Agreement(clip, recipe, runner, pixels, split, split + float(np.abs(exact[0] - exact[1]).max()))


def test_probabilities_and_ranking_equal_the_recipe_over_400_labels(agreement: Agreement) -> None:
    clip, recipe, runner = agreement.clip, agreement.recipe, agreement.runner
    labelset = resolve_labels("kinetics400")
    (result,) = classify_videos(runner, [str(clip)], labelset, ClassifyOptions(top_k=len(labelset)))
    assert result.ok and len(result.predictions) == len(labelset) == 400
    index = {name: i for i, name in enumerate(labelset.names)}
    order = [index[prediction.label] for prediction in result.predictions]
    probabilities = np.array([p.probability for p in result.predictions])
    logits = np.array([p.logit for p in result.predictions])
    assert np.abs(logits - recipe.logits[order]).max() <= agreement.tolerance
    tolerance = probability_tolerance(recipe.probabilities[order], recipe.logits, agreement.tolerance)
    assert np.all(np.abs(probabilities - recipe.probabilities[order]) <= tolerance)
    # The same top 5: labels may only swap places with one whose logit is within the tolerance
    # (a k-th largest value moves no more than the values do).
    top = np.sort(recipe.logits)[::-1][:5]
    assert np.abs(recipe.logits[order[:5]] - top).max() <= 2 * agreement.tolerance


def test_the_same_frames_and_pixels_as_the_recipe(agreement: Agreement) -> None:
    ours, theirs = agreement.pixels
    assert ours.shape == agreement.recipe.pixel_values.shape[1:]
    assert np.abs(ours - theirs).max() <= PIXEL_ROUNDING


def test_the_split_forward_on_the_recipes_pixels_equals_its_logits(agreement: Agreement) -> None:
    recipe, runner = agreement.recipe, agreement.runner
    features = runner.label_text_features(resolve_labels("kinetics400"))
    ours = runner.video_logits(recipe.pixel_values, features)[0]
    assert np.abs(ours - recipe.logits).max() <= agreement.split_tolerance
