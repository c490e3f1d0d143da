"""xclip-cli: zero-shot video classification with X-CLIP.

The public API is importable from here; heavy modules (torch, transformers, PyAV) load only
when one of their names is first used, so ``xclip --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.6.0"

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from xclip_cli.errors import ExitCode, XClipError
    from xclip_cli.jobs.classify import LocalExecutor, classify_videos
    from xclip_cli.jobs.embed import EmbedPlan, embed_videos, plan_embedding
    from xclip_cli.jobs.evaluate import compute_metrics, evaluate, load_dataset
    from xclip_cli.jobs.index import Index, IndexWriter, score_index, search_index
    from xclip_cli.jobs.moments import MomentOptions, search_moments
    from xclip_cli.jobs.scan import ScanOptions, ScanSummary, scan_videos
    from xclip_cli.jobs.timeline import build_timeline
    from xclip_cli.labels import Label, LabelSet, load_labelset_file, resolve_labels
    from xclip_cli.media.decode import VideoReader, sample_video
    from xclip_cli.media.preprocess import PreprocessConfig, preprocess_frame
    from xclip_cli.media.sampling import SamplingPlan, plan_segment_centres, plan_views
    from xclip_cli.model.backend import VideoFeatures
    from xclip_cli.model.onnx.runner import OnnxRunner
    from xclip_cli.model.open import open_backend
    from xclip_cli.model.text import ensemble_text_embeddings
    from xclip_cli.model.torch.runner import XClipRunner
    from xclip_cli.options import ClassifyOptions, TimelineOptions
    from xclip_cli.results import Moment, Prediction, VideoResult


_LAZY = {
    "XClipRunner": "model.torch.runner",
    "OnnxRunner": "model.onnx.runner",
    "open_backend": "model.open",
    "ensemble_text_embeddings": "model.text",
    "ClassifyOptions": "options",
    "classify_videos": "jobs.classify",
    "VideoFeatures": "model.backend",
    "sample_video": "media.decode",
    "VideoReader": "media.decode",
    "SamplingPlan": "media.sampling",
    "plan_segment_centres": "media.sampling",
    "plan_views": "media.sampling",
    "TimelineOptions": "options",
    "build_timeline": "jobs.timeline",
    "IndexWriter": "jobs.index",
    "Index": "jobs.index",
    "embed_videos": "jobs.embed",
    "plan_embedding": "jobs.embed",
    "EmbedPlan": "jobs.embed",
    "search_moments": "jobs.moments",
    "MomentOptions": "jobs.moments",
    "Moment": "results",
    "score_index": "jobs.index",
    "search_index": "jobs.index",
    "load_dataset": "jobs.evaluate",
    "evaluate": "jobs.evaluate",
    "compute_metrics": "jobs.evaluate",
    "PreprocessConfig": "media.preprocess",
    "preprocess_frame": "media.preprocess",
    "Label": "labels",
    "LabelSet": "labels",
    "resolve_labels": "labels",
    "load_labelset_file": "labels",
    "Prediction": "results",
    "VideoResult": "results",
    "ScanOptions": "jobs.scan",
    "ScanSummary": "jobs.scan",
    "scan_videos": "jobs.scan",
    "LocalExecutor": "jobs.classify",
    "XClipError": "errors",
    "ExitCode": "errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
