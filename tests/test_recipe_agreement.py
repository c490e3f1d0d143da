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

import numpy as np
import pytest

from xclip_cli.jobs.classify import classify_videos, load_frames, view_pixels
from xclip_cli.labels import resolve_labels
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.options import ClassifyOptions

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from common import SMOKE_SIZE, write_synthetic_clip
from recipe import RecipeResult, load_recipe, run_recipe

# Our preprocessing is the PIL backend's step for step: equal up to float rounding.
PIXEL_TOLERANCE = 1e-5
# The split forward against model(**inputs) on the same pixels: the recipe pads 400 labels to the
# longest, which moves float32 sums in the text encoder (measured 1.6e-4 at logits near 1.3).
SPLIT_LOGIT_TOLERANCE, SPLIT_LOGIT_RELATIVE = 5e-4, 1e-5
# End to end, 400 labels: logits of -20..9 here, measured within 5e-4.
LOGIT_TOLERANCE = 2e-3
PROBABILITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def recipe_and_ours(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RecipeResult, XClipRunner]:
    clip = tmp_path_factory.mktemp("agreement") / "synthetic.mp4"
    write_synthetic_clip(clip, seconds=3, sliced=False, size=SMOKE_SIZE)  # 90 frames, one keyframe
    model, processor = load_recipe(tiny_model_dir)
    recipe = run_recipe(model, processor, clip, resolve_labels("kinetics400").names)
    return clip, recipe, XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")


def test_probabilities_and_ranking_equal_the_recipe_over_400_labels(
    recipe_and_ours: tuple[Path, RecipeResult, XClipRunner],
) -> None:
    clip, recipe, runner = recipe_and_ours
    labelset = resolve_labels("kinetics400")
    (result,) = classify_videos(runner, [str(clip)], labelset, ClassifyOptions(top_k=len(labelset)))
    assert result.ok and len(result.predictions) == len(labelset) == 400
    index = {name: i for i, name in enumerate(labelset.names)}
    order = [index[prediction.label] for prediction in result.predictions]
    probabilities = np.array([p.probability for p in result.predictions])
    logits = np.array([p.logit for p in result.predictions])
    assert order[:5] == list(np.argsort(-recipe.probabilities)[:5])
    np.testing.assert_allclose(probabilities, recipe.probabilities[order], atol=PROBABILITY_TOLERANCE, rtol=0)
    np.testing.assert_allclose(logits, recipe.logits[order], atol=LOGIT_TOLERANCE, rtol=0)


def test_the_same_frames_and_pixels_as_the_recipe(recipe_and_ours: tuple[Path, RecipeResult, XClipRunner]) -> None:
    clip, recipe, runner = recipe_and_ours
    ours = view_pixels(load_frames(runner, str(clip), ClassifyOptions()))
    assert ours.shape == recipe.pixel_values.shape
    assert np.abs(ours - recipe.pixel_values).max() <= PIXEL_TOLERANCE


def test_the_split_forward_on_the_recipes_pixels_equals_its_logits(
    recipe_and_ours: tuple[Path, RecipeResult, XClipRunner],
) -> None:
    _, recipe, runner = recipe_and_ours
    features = runner.label_text_features(resolve_labels("kinetics400"))
    ours = runner.video_logits(recipe.pixel_values, features)[0]
    np.testing.assert_allclose(ours, recipe.logits, atol=SPLIT_LOGIT_TOLERANCE, rtol=SPLIT_LOGIT_RELATIVE)
