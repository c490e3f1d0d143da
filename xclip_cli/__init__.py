"""xclip-cli: zero-shot video classification with X-CLIP.

The public API is importable from here; heavy modules (torch, transformers, PyAV) load only
when one of their names is first used, so ``xclip --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.4.0"

_LAZY = {
    "XClipRunner": "runner",
    "OnnxRunner": "onnx_runner",
    "open_backend": "engine",
    "ensemble_text_embeddings": "text_side",
    "ClassifyOptions": "options",
    "classify_videos": "classify",
    "VideoFeatures": "backend",
    "sample_video": "media.decode",
    "VideoReader": "media.decode",
    "SamplingPlan": "media.sampling",
    "plan_segment_centres": "media.sampling",
    "plan_views": "media.sampling",
    "TimelineOptions": "options",
    "build_timeline": "timeline",
    "IndexWriter": "index",
    "Index": "index",
    "embed_videos": "index",
    "score_index": "index",
    "search_index": "index",
    "load_dataset": "evaluation",
    "evaluate": "evaluation",
    "compute_metrics": "evaluation",
    "PreprocessConfig": "preprocess",
    "preprocess_frame": "preprocess",
    "Label": "labels",
    "LabelSet": "labels",
    "resolve_labels": "labels",
    "load_labelset_file": "labels",
    "Prediction": "results",
    "VideoResult": "results",
    "XClipError": "errors",
    "ExitCode": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
