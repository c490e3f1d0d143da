"""Options are checked when made: a library caller gets the CLI's one-line UsageError at once."""

from __future__ import annotations

import math

import pytest

from xclip_cli.errors import ExitCode, UsageError
from xclip_cli.options import ClassifyOptions, TimelineOptions


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"crops": 2}, "--crops 2: expected 1 (centre crop) or 3 (left, centre, right)"),
        ({"clips": 0}, "--clips 0: expected 1 to 64"),
        ({"top_k": 0}, "--top-k 0: expected at least 1"),
        ({"workers": -1}, "--workers -1: expected 0 or more"),
        ({"timeout": 0.0}, "--timeout 0.0: expected a positive number of seconds"),
        ({"start": math.nan}, "--start nan: expected a number of seconds from 0 on"),
        ({"start": 5.0, "end": 2.0}, "--end 2 must be after --start 5"),
    ],
)
def test_impossible_classify_options_are_refused_when_made(fields: dict[str, float], message: str) -> None:
    with pytest.raises(UsageError) as info:
        ClassifyOptions(**fields)  # type: ignore[arg-type]
    assert str(info.value) == message and info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("fields", [{"window": 0.0}, {"stride": math.inf}, {"window": math.nan}])
def test_impossible_windows_are_refused_when_made(fields: dict[str, float]) -> None:
    with pytest.raises(UsageError, match=r"^--window and --stride must be positive numbers of seconds$"):
        TimelineOptions(**fields)


def test_views_are_clips_times_crops() -> None:
    assert ClassifyOptions(clips=4, crops=3).views == 12
