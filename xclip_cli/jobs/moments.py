"""Find the moment: a windowed index (``xclip embed --windows``) and moment search over it.

Embedding: each video is decoded once, front to back (``timeline.decoded_windows``), and the
vision side of every window (what X-CLIP's head needs to score any text later) is stored with
the window's start and end, a video's rows all in one shard (``index.IndexWriter``).

Search: X-CLIP conditions the text on each video (the prompt generator), so an exact score
needs the head for every window and query. ``search_moments`` ranks in two stages. The first
pass conditions the text on a few guide windows only (``GUIDES``, evenly spaced over the index)
and scores every window against the texts conditioned on its nearest guides (by embedding; the
best of ``NEAREST_GUIDES``): a matrix product per window instead of the head. The full head then
scores the best ``candidates`` of that pass; ``exact`` runs it on every window. The head runs in
numpy, arranged for many windows and few texts (``model.head``: a tenth of the graph's work per
window). Neighbouring windows of one video that both match merge into one moment.
``moment_thumbnails`` shows what the model saw in each moment's best window (``--report``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from xclip_cli.errors import UsageError, VideoError
from xclip_cli.jobs.classify import load_frames
from xclip_cli.jobs.index import WHOLE_VIDEOS, Index, IndexEntry
from xclip_cli.media.thumbnails import video_thumbnails
from xclip_cli.model.backend import Backend
from xclip_cli.model.head import CHUNK, HeadWeights, conditioned_text, head_logits
from xclip_cli.options import ClassifyOptions
from xclip_cli.results import Moment

# Windows per query the full head scores after the first pass, and at least this many per moment
# asked. With the guides below, on bench_search's 100,000 windows the exact top 10 of 32 queries
# lay within the first pass's best 3,053 (within the best 21 for 28 of them; docs/performance.md).
CANDIDATES = 1024
CANDIDATES_PER_MOMENT = 50
# The first pass's guide windows: the texts are conditioned on these exactly, and each window is
# scored against the conditioning of its nearest guides. Finding the nearest costs a product with
# every window's embedding (about 0.15 s for 100,000 windows and 512 guides); 1,024 guides cost
# 0.2 s more and agreed with --exact 99-100% against 99.1-100% (benchmarks/bench_search.py).
GUIDES = 512
NEAREST_GUIDES = 3
PASS_CHUNK = 4096  # windows at a time in the first pass
READ_CHUNK = 1024  # windows read from the index at a time (float32: 100 MB for base-patch32)
TOUCHING = 1e-3  # seconds: windows this close are neighbours (times are kept to the millisecond)


@dataclass(frozen=True)
class MomentOptions:
    """What a moment search returns; impossible values raise ``UsageError``."""

    top_k: int = 10  # moments per query
    min_score: float | None = None  # windows scoring less never match
    merge: bool = True  # neighbouring matching windows of one video become one moment
    exact: bool = False  # the full head on every window, not on the first pass's candidates
    candidates: int = CANDIDATES

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.candidates < 1:
            raise UsageError("--top-k and the number of candidates must be at least 1")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise UsageError(f"--min-score {self.min_score}: expected a number")


def search_moments(
    runner: Backend, index: Index, queries: Sequence[str], options: MomentOptions = MomentOptions()
) -> tuple[Moment, ...]:
    """The best moments for each query (queries in order, each best first)."""
    if index.windows == WHOLE_VIDEOS:
        raise UsageError(f"{index.folder}: holds whole videos, not windows; build it with xclip embed --windows")
    if not queries or any(not query.strip() for query in queries):
        raise UsageError("a query is empty")
    index.check_runner(runner)
    windows = [entry for entry in index.entries if entry.status == "ok"]
    if not windows:
        return ()
    queries = list(dict.fromkeys(queries))  # a query given twice is searched once
    scores = window_scores(runner.head_weights(), index, windows, runner.text_features(queries), options)
    moments: list[Moment] = []
    for number, query in enumerate(queries):
        moments += merge_windows(query, windows, scores[:, number], options)
    return tuple(moments)


def moment_thumbnails(
    runner: Backend, moments: Iterable[Moment], sampling: str = "exact", timeout: float | None = None
) -> dict[tuple[str, tuple[float, float]], tuple[bytes, ...] | VideoError]:
    """(path, best window) -> JPEGs of the frames the model saw in each moment's best window:
    those ``xclip classify --start S --end E`` of it takes (with the index's ``sampling``), each
    window decoded once; a video that no longer reads gives its error instead."""
    found: dict[tuple[str, tuple[float, float]], tuple[bytes, ...] | VideoError] = {}
    for moment in moments:
        key = (moment.path, moment.best)
        if key in found:
            continue
        options = ClassifyOptions(start=moment.best[0], end=moment.best[1], sampling=sampling, timeout=timeout)
        try:
            found[key] = video_thumbnails(load_frames(runner, moment.path, options), runner.preprocess)
        except VideoError as error:
            found[key] = error
    return found


def window_scores(
    head: HeadWeights, index: Index, windows: list[IndexEntry], text: np.ndarray, options: MomentOptions
) -> np.ndarray:
    """Each window's logit for each text feature (``text``: Q x D), as classify reports it:
    (windows, Q), NaN where a text's first pass left the window out. Every window read is
    scored for every text, but a text keeps only its own candidates' scores, so what one query
    finds does not depend on the others asked with it."""
    wanted = max(options.candidates, CANDIDATES_PER_MOMENT * options.top_k)
    keep = np.ones((len(windows), len(text)), dtype=bool)
    if not options.exact and len(windows) > wanted + GUIDES:  # else the head on every window costs no more
        first = first_pass(head, index, windows, text)
        keep[:] = False
        for column in range(len(text)):
            keep[np.argpartition(-first[:, column], wanted - 1)[:wanted], column] = True
    chosen = np.flatnonzero(keep.any(axis=1))
    scores = np.full((len(windows), len(text)), np.nan)
    for start in range(0, len(chosen), READ_CHUNK):
        rows = chosen[start : start + READ_CHUNK]
        features = index.features([windows[row] for row in rows])
        scores[rows] = head_logits(head, features.embeds, features.patches, text)
    scores[~keep] = np.nan
    return scores


def first_pass(head: HeadWeights, index: Index, windows: list[IndexEntry], text: np.ndarray) -> np.ndarray:
    """Each window's approximate cosine with each text (windows, Q): X-CLIP's cosine with the
    text as the prompt generator conditions it on a guide window, the best over the window's
    ``NEAREST_GUIDES`` nearest guides (a guide is its own nearest). Close to the exact cosine
    where the conditioning of a window's near guides is close to its own."""
    embeds = index.embeddings(windows)  # unit length
    guides = np.unique(np.linspace(0, len(windows) - 1, min(GUIDES, len(windows))).round().astype(np.int64))
    conditioned = np.concatenate(  # (G, Q, D)
        [
            conditioned_text(head, index.features([windows[i] for i in part]).patches, text)
            for part in np.array_split(guides, -(-len(guides) // CHUNK))
        ]
    )
    nearest, guide_embeds = min(NEAREST_GUIDES, len(guides)), embeds[guides].T
    scores = np.full((len(windows), len(text)), -np.inf, dtype=np.float32)
    for start in range(0, len(windows), PASS_CHUNK):
        rows = slice(start, start + PASS_CHUNK)
        similarity = embeds[rows] @ guide_embeds
        for _ in range(nearest):  # the nearest guide, then the next (argmax: 5x faster than argpartition here)
            guide = np.argmax(similarity, axis=1)
            similarity[np.arange(len(guide)), guide] = -np.inf
            cosines = np.matmul(conditioned[guide], embeds[rows, :, None])[:, :, 0]
            np.fmax(scores[rows], cosines, out=scores[rows])  # a NaN cosine (damaged features) is passed over
    return scores


def merge_windows(
    query: str, windows: Sequence[IndexEntry], scores: np.ndarray, options: MomentOptions
) -> list[Moment]:
    """The ``top_k`` best moments: windows taken best first; one that touches (overlaps or
    adjoins) a moment of its video joins it (``merge``), others start one, until ``top_k``
    moments exist. A window matches when it scores at least the weakest moment listed (and
    ``min_score``); a window that bridges two moments joins them."""
    scored = np.flatnonzero(~np.isnan(scores))
    order = scored[np.argsort(-scores[scored], kind="stable")].tolist()
    groups: list[list[int]] = []  # windows of each moment, by position in ``windows``
    bar = -math.inf  # the weakest listed moment's score, once there are top_k
    for i in order:
        if scores[i] < bar or (options.min_score is not None and scores[i] < options.min_score):
            break
        touching = [g for g in groups if options.merge and any(_touch(windows[i], windows[j]) for j in g)]
        if not touching:
            if len(groups) == options.top_k:
                break
            groups.append([i])
            if len(groups) == options.top_k:
                bar = float(scores[i])
            continue
        touching[0].append(i)
        for other in touching[1:]:
            touching[0].extend(other)
            groups.remove(other)
        if len(groups) < options.top_k:  # a bridge joined two: room for another moment again
            bar = -math.inf
    moments = [_moment(query, [windows[j] for j in group], [float(scores[j]) for j in group]) for group in groups]
    return sorted(moments, key=lambda moment: -moment.score)


def _touch(a: IndexEntry, b: IndexEntry) -> bool:
    assert a.start is not None and a.end is not None and b.start is not None and b.end is not None
    return a.path == b.path and a.start <= b.end + TOUCHING and b.start <= a.end + TOUCHING


def _moment(query: str, windows: list[IndexEntry], scores: list[float]) -> Moment:
    best = windows[int(np.argmax(scores))]
    assert best.start is not None and best.end is not None
    starts = [window.start for window in windows if window.start is not None]
    ends = [window.end for window in windows if window.end is not None]
    return Moment(query, best.path, min(starts), max(ends), max(scores), (best.start, best.end), len(windows))
