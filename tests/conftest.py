"""Shared fixtures: isolated cache dirs, tiny checkpoints, synthetic clips."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import save_tiny_checkpoint, write_video


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache dir; nothing reads or writes the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XCLIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A developer's running server, cluster or debug setting must not change what is tested.
    for name in ("XCLIP_MODEL", "XCLIP_DEVICE", "XCLIP_SERVER", "XCLIP_DEBUG", "XCLIP_BACKEND", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    return cache


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-xclip"))


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second tiny checkpoint with different random weights."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-xclip-other"), seed=1)


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_video(folder / "a.mp4", num_frames=36, size=(64, 48))
    write_video(folder / "b.mp4", num_frames=20, size=(48, 64), pattern="flat")
    return folder
