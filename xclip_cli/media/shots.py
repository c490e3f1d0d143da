"""Shot boundaries for ``xclip timeline --shots``, from PySceneDetect's content detector.

PySceneDetect (the ``scenedetect`` package, ``pip install 'xclip-cli[shots]'``) decodes the
video once more (every frame, shrunk for the detector) and reports where the picture changes
abruptly. Its cut times are mapped to this tool's frame times (from timestamps), so shots and
windows share one clock.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

from xclip_cli.errors import MissingDependency, VideoError

SHOT_THRESHOLD = 27.0  # ContentDetector's default: the change in HSV content that makes a cut
MIN_SHOT_FRAMES = 15  # PySceneDetect's default: no shot shorter than this


def require_scenedetect() -> None:
    """``MissingDependency`` unless PySceneDetect is importable (checked before any work)."""
    try:
        import scenedetect  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "--shots needs PySceneDetect: pip install 'xclip-cli[shots]' "
            "(in a source checkout: pip install -e '.[shots]')"
        ) from None


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
    if len(scenes) < 2:
        return []
    # PySceneDetect's clock starts at the stream's start time and its frame numbers assume a
    # constant rate: use its seconds, from its first scene's start, snapped to a real frame time.
    origin = _seconds(scenes[0][0])
    cuts = []
    for start, _ in scenes[1:]:
        at = _seconds(start) - origin
        index = bisect.bisect_left(times, at)
        nearest = min((i for i in (index - 1, index) if 0 <= i < len(times)), key=lambda i: abs(times[i] - at))
        if nearest > 0:
            cuts.append(times[nearest])
    return sorted(set(cuts))


def _seconds(timecode: object) -> float:
    seconds = getattr(timecode, "seconds", None)  # PySceneDetect 0.7; get_seconds() before
    return float(seconds if seconds is not None else timecode.get_seconds())  # type: ignore[attr-defined]


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
