"""The frame sampler: X-CLIP's segment centres, from timestamps."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xclip_cli.media.sampling import frame_span, plan_keyframe_views, plan_segment_centres, plan_views


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


def _parts(times: list[float], t: int, views: int) -> list[list[tuple[float, float]]]:
    """Each view's sample points' parts of their segments: [start, end) in seconds."""
    step = frame_span(times) / t
    return [
        [(step * (i + view / views), step * (i + view / views) + step / views) for i in range(t)]
        for view in range(views)
    ]


def test_keyframes_near_the_centres_stand_in_for_exact_frames() -> None:
    times = [i / 10 for i in range(100)]  # 10 s at 10 fps
    keyframes = list(range(0, 100, 10))  # one a second: frames 0, 10, ..., 90
    (exact,) = plan_views(times, 4)  # centres at 1.25, 3.75, 6.25, 8.75 s
    (plan,) = plan_keyframe_views(times, keyframes, 4)
    assert exact.frame_indices == (12, 37, 62, 87)
    assert plan.frame_indices == (10, 40, 60, 90)  # the keyframe nearest each centre, in its 2.5 s segment
    assert plan.substitutes == 4 and plan.timestamps == (1.0, 4.0, 6.0, 9.0)


def test_segments_without_a_keyframe_keep_the_exact_frame() -> None:
    times = [i / 10 for i in range(100)]
    (exact,) = plan_views(times, 4)
    (plan,) = plan_keyframe_views(times, [0, 95], 4)  # keyframes only in the first and last segment
    assert plan.frame_indices == (0, exact.frame_indices[1], exact.frame_indices[2], 95)
    assert plan.substitutes == 2
    assert plan_keyframe_views(times, [], 4) == plan_views(times, 4)  # no keyframe: exact sampling


def test_views_take_keyframes_from_their_own_parts_of_a_segment() -> None:
    times = [i / 10 for i in range(100)]
    plans = plan_keyframe_views(times, list(range(0, 100, 5)), 2, views=2)  # a keyframe every 0.5 s
    first, second = (plan.frame_indices for plan in plans)
    assert not set(first) & set(second)  # the views never share a frame
    # Parts [0, 2.5) and [5, 7.5) for the first view, [2.5, 5) and [7.5, 10) for the second;
    # points 1.25, 6.25 and 3.75, 8.75 s sit between two keyframes: the earlier one wins.
    assert first == (10, 60) and second == (35, 85)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=600),
    fps=st.floats(min_value=0.5, max_value=60.0),
    t=st.integers(min_value=1, max_value=32),
    views=st.integers(min_value=1, max_value=3),
    gop=st.integers(min_value=1, max_value=300),
    offset=st.integers(min_value=0, max_value=299),
)
def test_keyframe_plan_properties(n: int, fps: float, t: int, views: int, gop: int, offset: int) -> None:
    # Substitutes are keyframes inside their sample point's part of the segment; every other
    # frame is the exact one; keyframes add no repeats; counts and timestamps add up.
    times = [i / fps for i in range(n)]
    keyframes = [0, *range(offset % gop, n, gop)]
    exact = plan_views(times, t, views)
    plans = plan_keyframe_views(times, keyframes, t, views)
    for view, (plan, reference) in enumerate(zip(plans, exact, strict=True)):
        substituted = [i for i in range(t) if plan.frame_indices[i] != reference.frame_indices[i]]
        assert plan.substitutes == len(substituted)
        assert all(reference.frame_indices[i] not in keyframes for i in substituted)  # free frames stay
        for i in substituted:
            lo, hi = _parts(times, t, views)[view][i]
            assert plan.frame_indices[i] in keyframes
            assert lo - 1e-9 <= times[plan.frame_indices[i]] < hi - 1e-9
        assert plan.timestamps == tuple(times[i] for i in plan.frame_indices)
        if len(set(reference.frame_indices)) == t:
            assert len(set(plan.frame_indices)) == t
