"""What a classification returns: plain frozen dataclasses that every writer understands."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOP_K = 5  # labels reported per video unless --top-k says otherwise


@dataclass(frozen=True)
class Prediction:
    """One label's score for one video."""

    label: str
    probability: float  # softmax over the whole label set
    logit: float | None  # X-CLIP's scaled cosine similarity (logits_per_video); the mean over views


@dataclass(frozen=True)
class VideoResult:
    """The outcome for one input: top predictions, or the reason it failed."""

    path: str  # exactly as given by the user
    predictions: tuple[Prediction, ...] = ()
    model: str = ""
    labelset: str = ""
    labelset_digest: str = ""  # LabelSet.digest: tells two sets named alike but worded apart
    timestamps: tuple[float, ...] = ()  # seconds of the frames used, from the first frame
    duration: float | None = None  # seconds
    width: int | None = None  # decoded size, as displayed (after rotation)
    height: int | None = None
    error: str | None = None
    views: int = 1  # temporal views x crops whose probabilities were averaged
    warnings: tuple[str, ...] = ()  # what was wrong with a video that still classified (damage, truncation)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        return "ok" if self.ok else "error"
