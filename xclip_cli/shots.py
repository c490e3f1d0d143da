"""Shot boundaries for ``xclip timeline --shots``, from PySceneDetect's content detector.

PySceneDetect (the ``scenedetect`` package, ``pip install 'xclip-cli[shots]'``) decodes the
video once more, downscaled, and reports where the picture changes abruptly. Its frame numbers
are mapped to this tool's frame times (from timestamps), so shots and windows share one clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from .errors import UsageError, VideoError

SHOT_THRESHOLD = 27.0  # ContentDetector's default: the change in HSV content that makes a cut
MIN_SHOT_FRAMES = 15  # PySceneDetect's default: no shot shorter than this


def require_scenedetect() -> None:
    """``UsageError`` unless PySceneDetect is importable (checked before any work)."""
    try:
        import scenedetect  # noqa: F401
    except ImportError:
        raise UsageError("--shots needs PySceneDetect: pip install 'xclip-cli[shots]'") from None


def detect_cuts(path: str, times: Sequence[float], threshold: float = SHOT_THRESHOLD) -> list[float]:
    """Times (seconds from the first frame, as ``times`` gives them) where a new shot starts.

    ``times`` are the video's frame times in display order (``VideoReader.times``).
    """
    require_scenedetect()
    from scenedetect import ContentDetector, SceneManager, open_video

    try:
        video = open_video(path, backend="pyav")
        manager = SceneManager()
        manager.add_detector(ContentDetector(threshold=threshold, min_scene_len=MIN_SHOT_FRAMES))
        manager.detect_scenes(video)
        scenes = manager.get_scene_list()
    except Exception as exc:  # PySceneDetect raises its own and OpenCV's errors: name the file
        raise VideoError(path, f"shot detection failed ({type(exc).__name__}: {exc})") from None
    starts = sorted({start.frame_num for start, _ in scenes[1:]})
    return [times[frame] for frame in starts if 0 < frame < len(times)]


def shot_windows(cuts: Sequence[float], duration: float, window: float) -> list[tuple[float, float]]:
    """Windows that follow the shots: one per shot, a long shot split into equal windows no
    longer than ``window``. They tile ``[0, duration)``."""
    bounds = [0.0, *(cut for cut in cuts if 0 < cut < duration), duration]
    extents = []
    for start, end in itertools.pairwise(bounds):
        if end <= start:
            continue
        parts = max(1, math.ceil((end - start) / window - 1e-9))
        step = (end - start) / parts
        extents += [(start + i * step, end if i == parts - 1 else start + (i + 1) * step) for i in range(parts)]
    return extents
