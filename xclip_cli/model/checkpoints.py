"""The X-CLIP checkpoints published by the authors on the Hugging Face hub.

This catalogue only feeds ``xclip models``; at run time the frame count, resolution and
preprocessing always come from the loaded checkpoint's own config files.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "microsoft/xclip-base-patch32"
ZERO_SHOT_MODEL = "microsoft/xclip-base-patch16-zero-shot"


@dataclass(frozen=True)
class KnownCheckpoint:
    """One published checkpoint and what it was trained for."""

    model_id: str
    frames: int
    resolution: int
    trained_on: str
    note: str = ""


def _few_shot(slug: str, dataset: str, shots: int) -> KnownCheckpoint:
    return KnownCheckpoint(
        f"microsoft/xclip-base-patch16-{slug}-{shots}-shot", 32, 224, f"{dataset} {shots}-shot", "few-shot"
    )


KNOWN_CHECKPOINTS: tuple[KnownCheckpoint, ...] = (
    KnownCheckpoint(DEFAULT_MODEL, 8, 224, "Kinetics-400", "default"),
    KnownCheckpoint("microsoft/xclip-base-patch32-16-frames", 16, 224, "Kinetics-400"),
    KnownCheckpoint("microsoft/xclip-base-patch16", 8, 224, "Kinetics-400"),
    KnownCheckpoint("microsoft/xclip-base-patch16-16-frames", 16, 224, "Kinetics-400"),
    KnownCheckpoint("microsoft/xclip-large-patch14", 8, 224, "Kinetics-400"),
    KnownCheckpoint("microsoft/xclip-large-patch14-16-frames", 16, 224, "Kinetics-400"),
    KnownCheckpoint("microsoft/xclip-base-patch16-kinetics-600", 8, 224, "Kinetics-600"),
    KnownCheckpoint("microsoft/xclip-base-patch16-kinetics-600-16-frames", 16, 224, "Kinetics-600"),
    KnownCheckpoint("microsoft/xclip-large-patch14-kinetics-600", 8, 224, "Kinetics-600"),
    KnownCheckpoint(ZERO_SHOT_MODEL, 32, 224, "Kinetics-400", "zero-shot protocol"),
    *(_few_shot("hmdb", "HMDB-51", shots) for shots in (2, 4, 8, 16)),
    *(_few_shot("ucf", "UCF-101", shots) for shots in (2, 4, 8, 16)),
)


def close_checkpoint(model_id: str) -> str | None:
    """The catalogue's id that ``model_id`` is likely a misspelling of (``microsoft/xclip-base-patch3``,
    ``xclip-base-patch32``), for a did-you-mean; None for a catalogue id or nothing close."""
    known = {checkpoint.model_id for checkpoint in KNOWN_CHECKPOINTS}
    if model_id in known:
        return None
    # Whole ids and their names without the owner, compared without case.
    spellings = {known_id.lower(): known_id for known_id in known}
    spellings |= {known_id.split("/", 1)[1].lower(): known_id for known_id in known}
    close = difflib.get_close_matches(model_id.lower(), sorted(spellings), n=1, cutoff=0.85)
    return spellings[close[0]] if close else None


def local_folder(model_id: str) -> Path | None:
    """The folder holding a checkpoint's files on this machine: ``model_id`` itself (a
    ``save_pretrained`` folder), or its snapshot in the local Hugging Face cache (never the
    network, no torch). None: not on this machine. The one place a checkpoint is found."""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return folder.resolve()
    if model_id.startswith((".", "/", "~")) or model_id.count("/") > 1:
        return None
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"models--{model_id.replace('/', '--')}"
    try:
        commit = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if (snapshot / "config.json").is_file() else None
