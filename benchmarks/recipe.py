"""The transformers documentation recipe for X-CLIP: the baseline every benchmark compares against.

PyAV decodes every frame from the start up to the last sampled one (X-CLIP's segment centres),
``XCLIPProcessor(text=labels, videos=...)`` tokenizes the labels and preprocesses the frames,
and ``model(**inputs)`` runs the text encoder for every label and the video side.

It lives apart from ``common.py`` so that it imports only what a user of the recipe imports:
run as a fresh process (``python benchmarks/recipe.py MODEL_DIR CLIP LABELS_FILE``, one label
per line) it prints the top-5 labels and probabilities as JSON, and its wall time is the
recipe's one-shot cost with nothing of xclip_cli loaded.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

TOP_K = 5
# What each phase of one call does, for the benchmarks' tables.
PHASES = {
    "decode": "PyAV loop over every frame up to the last index",
    "processor": "tokenize the labels + VideoMAE image processor (PIL backend)",
    "forward": "model(**inputs): text encoder for every label + video side",
}


@dataclass(frozen=True)
class RecipeResult:
    """One video through the recipe: probabilities and logits of every label, the model's
    inputs, and the seconds each phase took."""

    probabilities: np.ndarray
    logits: np.ndarray
    pixel_values: np.ndarray
    phases: dict[str, float]


def segment_centres(num_frames: int, clip_len: int) -> list[int]:
    """X-CLIP's test-time sampling: the centre frame of each of ``clip_len`` equal segments."""
    return [int((i + 0.5) * num_frames / clip_len) for i in range(clip_len)]


def read_video_pyav(container: Any, indices: list[int]) -> np.ndarray:
    """The docs' decoder: decode every frame from the start up to the last index."""
    frames = []
    container.seek(0)
    wanted = set(indices)
    for i, frame in enumerate(container.decode(video=0)):
        if i > indices[-1]:
            break
        if i in wanted:
            frames.append(frame.to_ndarray(format="rgb24"))
    return np.stack(frames)


def load_recipe(model_dir: str | Path) -> tuple[Any, Any]:
    """``XCLIPModel`` (eval mode) and ``XCLIPProcessor`` from a checkpoint folder."""
    from transformers import XCLIPModel, XCLIPProcessor

    processor = XCLIPProcessor.from_pretrained(str(model_dir))
    model = XCLIPModel.from_pretrained(str(model_dir)).eval()
    return model, processor


def run_recipe(model: Any, processor: Any, clip: str | Path, labels: list[str]) -> RecipeResult:
    """One video through the docs recipe, with the time of each phase."""
    phases: dict[str, float] = {}
    start = time.perf_counter()
    with av.open(str(clip)) as container:
        total = container.streams.video[0].frames
        indices = segment_centres(total, int(model.config.vision_config.num_frames))
        video = read_video_pyav(container, indices)
    phases["decode"] = time.perf_counter() - start
    start = time.perf_counter()
    inputs = processor(text=labels, videos=list(video), return_tensors="pt", padding=True)
    phases["processor"] = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        logits = model(**inputs).logits_per_video
        probabilities = logits.softmax(dim=1)
    phases["forward"] = time.perf_counter() - start
    return RecipeResult(
        probabilities=probabilities[0].numpy(),
        logits=logits[0].numpy(),
        pixel_values=inputs["pixel_values"].numpy(),
        phases=phases,
    )


def main(argv: list[str]) -> None:
    model_dir, clip, labels_file = argv
    labels = Path(labels_file).read_text(encoding="utf-8").splitlines()
    model, processor = load_recipe(model_dir)
    probabilities = run_recipe(model, processor, clip, labels).probabilities
    top = np.argsort(-probabilities)[:TOP_K]
    print(json.dumps([[labels[i], float(probabilities[i])] for i in top]))


if __name__ == "__main__":
    main(sys.argv[1:])
