"""A video's frame rate as editing tools count frames: the rate its header states, snapped to
the standard rate it stands for, and whether its frames really keep to that rate.

Times in an edit (EDL timecode, FCPXML, OpenTimelineIO) are frame numbers at a rate, so a mark
lands on the right frame only when frame ``i`` of the file shows at ``i / rate``. Phones and
screen recorders write variable-rate files whose frames drift from any one rate; those are
told apart here from the frames' own timestamps (the demux pass ``VideoReader`` makes), not
from the header, which states some rate either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

# The rates cameras and editors use; a stated rate within SNAP_TOLERANCE of one is that rate
# (a Matroska file that stores 29.97 in milliseconds says 2997/100, which is 30000/1001).
STANDARD_RATES = tuple(
    Fraction(rate)
    for rate in (
        Fraction(24000, 1001), 24, 25, Fraction(30000, 1001), 30, Fraction(48000, 1001), 48, 50,
        Fraction(60000, 1001), 60, 100, Fraction(120000, 1001), 120,
    )
)  # fmt: skip
SNAP_TOLERANCE = 0.0004  # relative: below half the 0.1 % between 30 and 30000/1001
# A frame further than this from its slot at the rate (in frames) makes the file variable-rate:
# counting frames at that rate would name the wrong frame, or soon would.
SLOT_TOLERANCE = 0.25


@dataclass(frozen=True)
class FrameRate:
    """How an editor counts one video's frames."""

    rate: Fraction  # frames per second: the stated rate, snapped to a standard one when it is one
    constant: bool  # every frame shows within SLOT_TOLERANCE frames of i / rate (False: variable rate)
    frames: int  # frames in the file
    duration: float  # seconds its frames cover (VideoReader.duration)
    width: int = 0  # coded size, 0 when not known
    height: int = 0
    audio: bool = False  # the file has an audio stream


def nominal_rate(rate: Fraction) -> Fraction:
    """The standard rate ``rate`` stands for (``2997/100``: ``30000/1001``), else ``rate`` itself."""
    nearest = min(STANDARD_RATES, key=lambda standard: abs(rate - standard))
    return nearest if abs(rate - nearest) <= nearest * Fraction(SNAP_TOLERANCE) else rate


def keeps_rate(times: list[float], rate: Fraction) -> bool:
    """Whether frame ``i`` shows at ``i / rate`` (within SLOT_TOLERANCE frames) for every ``i``;
    ``times`` are seconds from the first frame, in display order."""
    per_second = float(rate)
    return all(abs(time * per_second - index) <= SLOT_TOLERANCE for index, time in enumerate(times))


def probe_frame_rate(path: str | Path) -> FrameRate:
    """The rate editors should count ``path``'s frames at, read from its packets without decoding.

    Raises ``VideoError`` naming the file when it cannot be opened or holds no video.
    """
    from xclip_cli.media.decode import VideoReader, stream_rate

    with VideoReader(path) as reader:
        rate = nominal_rate(stream_rate(reader.stream))
        context = reader.stream.codec_context
        return FrameRate(
            rate=rate,
            constant=keeps_rate(reader.times, rate),
            frames=len(reader.times),
            duration=reader.duration,
            width=int(context.width or 0),
            height=int(context.height or 0),
            audio=bool(reader.container.streams.audio),
        )
