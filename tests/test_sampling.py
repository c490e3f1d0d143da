"""The frame sampler: X-CLIP's segment centres, from timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xclip_cli.media.sampling import frame_span, plan_segment_centres


def constant_rate(n: int, fps: float) -> list[float]:
    return [i / fps for i in range(n)]


@pytest.mark.parametrize(("n", "t"), [(300, 8), (250, 8), (64, 8), (100, 16), (1000, 32), (9, 8)])
def test_constant_rate_matches_xclip_index_protocol(n: int, t: int) -> None:
    # X-CLIP's SampleFrames(test_mode=True): frame int((i + 0.5) * N / T).
    plan = plan_segment_centres(constant_rate(n, 30.0), t)
    assert plan.frame_indices == tuple(int((i + 0.5) * n / t) for i in range(t))


def test_fewer_frames_than_requested_repeats_frames() -> None:
    plan = plan_segment_centres(constant_rate(3, 25.0), 8)
    assert plan.frame_indices == (0, 0, 0, 1, 1, 2, 2, 2)


def test_single_frame_video() -> None:
    plan = plan_segment_centres([0.0], 8)
    assert plan.frame_indices == (0,) * 8
    assert plan.duration == 0.0


def test_variable_frame_rate_uses_time_not_index() -> None:
    # 10 frames in the first second, then one frame per second up to 9 s. The last frame
    # lasts the median step (0.1 s), so the span is 9.1 s and the centres of 4 segments are
    # 1.14, 3.41, 5.69 and 7.96 s: an index-based sampler would pick 0.4, 0.9, 4 and 8 s.
    times = [i / 10 for i in range(10)] + [float(s) for s in range(1, 10)]
    plan = plan_segment_centres(times, 4)
    assert plan.duration == pytest.approx(9.1)
    assert plan.timestamps == (1.0, 3.0, 5.0, 7.0)


def test_start_and_end_restrict_the_range() -> None:
    times = constant_rate(300, 30.0)  # 10 s
    plan = plan_segment_centres(times, 4, start=2.0, end=6.0)
    assert plan.timestamps == pytest.approx((2.5, 3.5, 4.5, 5.5))
    assert all(2.0 <= t < 6.0 for t in plan.timestamps)


def test_frame_span_adds_one_frame_duration() -> None:
    assert frame_span(constant_rate(250, 25.0)) == pytest.approx(10.0)
    assert frame_span([]) == 0.0


def test_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="no frames"):
        plan_segment_centres([], 8)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=5000),
    fps=st.floats(min_value=0.5, max_value=240.0),
    t=st.integers(min_value=1, max_value=64),
    jitter=st.lists(st.floats(min_value=0.0, max_value=0.9), min_size=0, max_size=50),
)
def test_plan_properties(n: int, fps: float, t: int, jitter: list[float]) -> None:
    # Any frame count, rate and (monotonic) timing irregularity: exactly T indices, in
    # range, never going backwards, and timestamps equal to the chosen frames' times.
    times = [(i + (jitter[i % len(jitter)] if jitter else 0.0)) / fps for i in range(n)]
    times = sorted({time - times[0] for time in times})
    plan = plan_segment_centres(times, t)
    assert len(plan.frame_indices) == t
    assert all(0 <= i < len(times) for i in plan.frame_indices)
    assert list(plan.frame_indices) == sorted(plan.frame_indices)
    assert plan.timestamps == tuple(times[i] for i in plan.frame_indices)
    if len(times) >= t and not jitter:
        # With at least T evenly spaced frames, no frame is used twice.
        assert len(set(plan.frame_indices)) == t
