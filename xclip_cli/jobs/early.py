"""Start decoding the first video while torch, transformers and the weights load.

A one-shot ``xclip classify clip.mp4`` spends about 3 s importing and loading before it can
decode anything, on a machine with a second core idle. The frame count and preprocessing a
checkpoint needs are read from its JSON files (a local folder or the Hugging Face cache) in a
thread, which decodes the first video meanwhile. Once the real processor is loaded, the guess is
compared with it: the early frames are used only when the settings are identical, so a wrong
guess costs time, never correctness.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from xclip_cli.errors import ModelLoadError, VideoError
from xclip_cli.jobs.classify import sample_frames
from xclip_cli.media.decode import SampledVideo
from xclip_cli.media.preprocess import PreprocessConfig
from xclip_cli.model.checkpoints import local_folder
from xclip_cli.options import ClassifyOptions


class EarlyDecode:
    """Decodes ``path`` for ``model_id``'s guessed settings in a thread; ``take`` checks the guess."""

    def __init__(self, model_id: str, path: str, options: ClassifyOptions) -> None:
        self.model_id = model_id
        self.path = path
        self.options = options
        self.settings: tuple[int, PreprocessConfig] | None = None
        self.result: SampledVideo[Any] | VideoError | None = None
        self.thread = threading.Thread(target=self._run, name="xclip-early-decode", daemon=True)
        self.thread.start()

    def take(self, num_frames: int, preprocess: PreprocessConfig) -> dict[str, SampledVideo[Any] | VideoError]:
        """``{path: frames or error}`` when the guess matches the loaded checkpoint, else ``{}``."""
        self.thread.join()
        if self.result is None or self.settings != (num_frames, preprocess):
            return {}
        return {self.path: self.result}

    def _run(self) -> None:
        try:
            self.settings = checkpoint_settings(self.model_id)
            if self.settings is None:
                return
            num_frames, config = self.settings
            self.result = sample_frames(self.path, num_frames, config, self.options)
        except VideoError as exc:
            self.result = exc
        except Exception:  # a guess gone wrong: the regular path decodes the video
            self.settings = None


def checkpoint_settings(model_id: str) -> tuple[int, PreprocessConfig] | None:
    """(frames, preprocessing) from the checkpoint's JSON files, or ``None`` when unsure."""
    config = _json(model_id, "config.json")
    frames = (config or {}).get("vision_config", {}).get("num_frames")
    processor = _json(model_id, "processor_config.json")
    settings = processor.get("image_processor") if processor else _json(model_id, "preprocessor_config.json")
    if not isinstance(frames, int) or not isinstance(settings, dict):
        return None
    preprocess = _preprocess(settings)
    return None if preprocess is None else (frames, preprocess)


def _preprocess(settings: dict[str, Any]) -> PreprocessConfig | None:
    try:
        return PreprocessConfig.from_settings(settings)
    except (ModelLoadError, TypeError, ValueError, KeyError):  # unusual: leave it to the real processor
        return None


def _json(model_id: str, name: str) -> dict[str, Any] | None:
    folder = local_folder(model_id)
    path = folder / name if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
