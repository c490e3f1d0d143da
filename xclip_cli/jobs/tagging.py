"""Tagging (``--multi-label``): an independent yes/no score for every label.

X-CLIP's probabilities are a softmax over the whole label set: they say which label fits best,
not whether a label applies, and they change when labels are added. Here each label is scored
on its own: X-CLIP's head (prompt generator included) compares the video with the label's text
and with a fixed set of background prompts, and the score is the label's share of that
comparison, ``exp(l) / (exp(l) + sum(exp(b)))``. X-CLIP conditions every text on the video
separately, so a label's logit, and with it its score, does not depend on the other labels.
A label applies when its score reaches its threshold (from the label set, else the default).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xclip_cli.results import Tag, tags_above
from xclip_cli.store.digest import digest

if TYPE_CHECKING:
    import numpy as np

from xclip_cli.labels import LabelSet

# What any video shows: the label must beat these together to pass 0.5. Plain and generic on
# purpose; a label set can give its own (`background:`), and thresholds are best fitted on
# labelled videos of one's own (`xclip eval --multi-label --fit-thresholds`).
DEFAULT_BACKGROUND: tuple[str, ...] = (
    "a video",
    "a video of something",
    "a video of people",
    "a video of a place",
    "a video of an object",
    "an everyday scene",
)
DEFAULT_THRESHOLD = 0.5


def background_prompts(labelset: LabelSet) -> tuple[str, ...]:
    return labelset.background if labelset.background else DEFAULT_BACKGROUND


def background_digest(labelset: LabelSet) -> str:
    """12 hex digits of the background prompts in use: what every score depends on."""
    return digest(list(background_prompts(labelset)))


def tags_digest(labelset: LabelSet) -> str:
    """12 hex digits of the tagging settings in use (background and every threshold, defaults
    included): rows tagged otherwise must not be mixed into one results file."""
    return digest([list(background_prompts(labelset)), thresholds(labelset)])


def thresholds(labelset: LabelSet) -> list[float]:
    return [DEFAULT_THRESHOLD if label.threshold is None else label.threshold for label in labelset.labels]


def tag_scores(logits: np.ndarray, num_labels: int) -> np.ndarray:
    """(views, labels) scores from (views, labels + background) logits, each label against the
    background prompts alone (float64 inside: the shares of exponentials are computed stably)."""
    import numpy as np

    values = np.asarray(logits, dtype=np.float64)
    own, background = values[:, :num_labels], values[:, num_labels:]
    top = np.maximum(own, background.max(axis=1, keepdims=True))
    mine = np.exp(own - top)
    rest = np.exp(background[:, None, :] - top[:, :, None]).sum(axis=-1)
    return mine / (mine + rest)


def tags_of(scores: np.ndarray, labelset: LabelSet) -> tuple[Tag, ...]:
    """The labels whose score reaches their threshold, highest score first (possibly none)."""
    return tags_above(labelset.names, scores.tolist(), thresholds(labelset))
