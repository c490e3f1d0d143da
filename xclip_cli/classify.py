"""Classify videos: decode the sampled frames, preprocess, run the model, keep the top labels.

This is the library entry point that the CLI wraps::

    from xclip_cli import XClipRunner, classify_videos, resolve_labels

    runner = XClipRunner.from_pretrained("microsoft/xclip-base-patch32")
    for result in classify_videos(runner, ["video.mp4"], resolve_labels("kinetics400")):
        print(result.path, result.predictions[0].label)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .backend import Backend
from .errors import VideoError
from .labels import LabelSet
from .media.decode import SampledVideo
from .options import ClassifyOptions
from .pipeline import frames_in_order, score_loaded, scoring_text_features
from .results import VideoResult


def classify_videos(
    runner: Backend,
    paths: Iterable[str],
    labelset: LabelSet,
    options: ClassifyOptions = ClassifyOptions(),
    ready: Mapping[str, SampledVideo[np.ndarray] | VideoError] | None = None,
) -> Iterator[VideoResult]:
    """Yield one result per path, in order; a video that fails yields an error result.

    ``ready`` holds videos already decoded for this runner and these options (``EarlyDecode``).
    """
    text_features = scoring_text_features(runner, labelset, options.multi_label)
    yield from score_loaded(runner, frames_in_order(runner, paths, options, ready), text_features, labelset, options)


class Executor(Protocol):
    """Where videos are classified: this process (``LocalExecutor``) or a Ray cluster
    (``ray_engine.RayExecutor``). Both are called alike; a scan takes either."""

    @property
    def model(self) -> str:
        """The checkpoint (id or folder), as results files name it."""
        ...

    @property
    def precision(self) -> str: ...

    def classify(self, paths: Sequence[str], labelset: LabelSet, options: ClassifyOptions) -> Iterator[VideoResult]:
        """One result per path as each finishes; a video that fails gives an error result."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """Classify in this process with the backend that ``load`` opens (when work comes, not before)."""

    model: str
    precision: str
    load: Callable[[], Backend]

    def classify(self, paths: Sequence[str], labelset: LabelSet, options: ClassifyOptions) -> Iterator[VideoResult]:
        return classify_videos(self.load(), paths, labelset, options)
