"""Shared fixtures: isolated cache dirs, tiny checkpoints, synthetic clips."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import LABELS, float32_rounding_bound, random_pixels, save_tiny_checkpoint, write_video


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache dir; nothing reads or writes the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XCLIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A developer's running server, cluster or debug setting must not change what is tested.
    for name in ("XCLIP_MODEL", "XCLIP_DEVICE", "XCLIP_SERVER", "XCLIP_TOKEN", "XCLIP_DEBUG", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    # `auto` exports every new checkpoint for ONNX Runtime on first use (about 30 s even for a
    # tiny one), and most tests build their own: they run on torch. test_onnx.py runs auto,
    # onnx and every command on both backends, from one export shared by the session.
    monkeypatch.setenv("XCLIP_BACKEND", "torch")
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


@pytest.fixture(scope="session")
def random_inputs_bound(tiny_model_dir: Path) -> float:
    """The float32 bound (``helpers.float32_rounding_bound``) of ``tiny_model_dir`` for LABELS on
    ``random_pixels(3, ...)``, of which the random-pixel cases of test_equivalence.py and
    test_onnx.py take a part (the first videos, the first labels).

    A logit depends only on its own video and text (the prompt generator attends from each text
    to its own video's patches; padding comes after a prompt's end token, which the causal text
    encoder never looks past), so a part's logits are the same functions of the same inputs,
    and the bound over all of them (a maximum) covers every part.
    """
    from xclip_cli.model.torch.runner import XClipRunner

    runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
    return float32_rounding_bound(tiny_model_dir, LABELS, random_pixels(3, runner))


@pytest.fixture(scope="session")
def prepared_onnx(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The ``onnx`` cache folder with ``tiny_model_dir`` prepared once for the session."""
    import os

    from xclip_cli.model.onnx.cache import checkpoint_stamp
    from xclip_cli.model.onnx.export import prepare
    from xclip_cli.model.torch.runner import XClipRunner

    cache = tmp_path_factory.mktemp("onnx-session")
    previous = os.environ.get("XCLIP_CACHE_DIR")
    os.environ["XCLIP_CACHE_DIR"] = str(cache)
    try:
        runner = XClipRunner.from_pretrained(str(tiny_model_dir), device="cpu")
        prepare(runner, stamp=checkpoint_stamp(str(tiny_model_dir)))
    finally:
        if previous is None:
            del os.environ["XCLIP_CACHE_DIR"]
        else:
            os.environ["XCLIP_CACHE_DIR"] = previous
    return cache / "onnx"


@pytest.fixture
def onnx_ready(isolated_dirs: Path, prepared_onnx: Path) -> Path:
    """This test's cache, with the session's prepared tiny checkpoint linked in (not copied): for
    tests that only read it. Tests that write (damage, int8, another entry) copy it instead."""
    isolated_dirs.mkdir(parents=True, exist_ok=True)
    (isolated_dirs / "onnx").symlink_to(prepared_onnx, target_is_directory=True)
    return isolated_dirs
