"""``xclip timeline --plot``: the top labels' probabilities over time, as a PNG (matplotlib extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xclip_cli.errors import MissingDependency, OutputError
from xclip_cli.output.writers import clock
from xclip_cli.results import EvalReport, Segment, Timeline

PLOT_LABELS = 5  # lines drawn at least: every label that tops a segment, then the most probable
BAND_HEIGHT = 0.06  # the segment band, as a share of the probability axis above 1


def plotted_labels(timeline: Timeline, segments: Sequence[Segment], least: int = PLOT_LABELS) -> list[int]:
    """Label indices to draw: every segment's top label (in order of appearance), then the
    labels with the highest mean probability, up to ``least`` lines."""
    chosen = list(dict.fromkeys(timeline.labels.index(segment.label) for segment in segments))
    probabilities = np.stack([window.probabilities for window in timeline.windows])
    for index in np.argsort(-probabilities.mean(axis=0), kind="stable").tolist():
        if len(chosen) >= least:
            break
        if index not in chosen:
            chosen.append(index)
    return chosen


def timeline_figure(timeline: Timeline, segments: Sequence[Segment], plt: Any) -> Any:
    """The figure: one line per plotted label over the window centres, and above them a band
    with one bar per segment (the table's rows) in its top label's colour."""
    from matplotlib.ticker import FuncFormatter

    probabilities = np.stack([window.probabilities for window in timeline.windows])
    centres = [(window.start + window.end) / 2 for window in timeline.windows]
    chosen = plotted_labels(timeline, segments)
    colours = plt.get_cmap("tab10" if len(chosen) <= 10 else "tab20")
    figure, axes = plt.subplots(figsize=(10, 4.5), layout="constrained")
    colour_of = {}
    for position, index in enumerate(chosen):
        colour_of[timeline.labels[index]] = colours(position % colours.N)
        axes.plot(
            centres,
            probabilities[:, index],
            marker="o",
            markersize=3,
            color=colour_of[timeline.labels[index]],
            label=timeline.labels[index],
        )
    band = (1.02, BAND_HEIGHT)
    bars = [(segment.start, segment.end - segment.start) for segment in segments]
    axes.broken_barh(bars, band, facecolors=[colour_of[segment.label] for segment in segments], gid="segments")
    axes.text(0, band[0] + band[1] + 0.01, "top label per segment", fontsize="x-small", va="bottom")
    axes.set_xlim(0, max(timeline.duration, 1e-6))
    axes.set_ylim(0, band[0] + band[1] + 0.08)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds).split(".")[0]))
    axes.set_xlabel("time (mm:ss, window centres)")
    axes.set_ylabel("probability")
    axes.set_title(f"{Path(timeline.path).name} · {timeline.labelset}", loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    return figure


def plot_timeline(timeline: Timeline, segments: Sequence[Segment], path: Path) -> None:
    """Draw the timeline (see ``timeline_figure``) into a PNG (or SVG, PDF, JPEG by extension)."""
    plt = pyplot()
    _save(timeline_figure(timeline, segments, plt), plt, path)


def plot_confusion(report: EvalReport, path: Path) -> None:
    """A heatmap of the confusion matrix, rows normalised to the share of each true class."""
    plt = pyplot()
    counts = report.confusion.astype(float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    width, height = (min(30.0, 3 + 0.25 * len(labels)) for labels in (report.confusion_labels, report.confusion_rows))
    figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    image = axes.imshow(shares, cmap="viridis", vmin=0, vmax=1)
    axes.set_xticks(range(len(report.confusion_labels)), report.confusion_labels, rotation=90, fontsize="x-small")
    axes.set_yticks(range(len(report.confusion_rows)), report.confusion_rows, fontsize="x-small")
    axes.set_xlabel("predicted (top-1)")
    axes.set_ylabel("true class")
    figure.colorbar(image, ax=axes, shrink=0.6, label="share of the true class")
    _save(figure, plt, path)


def pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("--plot needs matplotlib: pip install 'xclip-cli[plot]'") from None
    return plt


def _save(figure: Any, plt: Any, path: Path) -> None:
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    finally:
        plt.close(figure)
