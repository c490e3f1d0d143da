"""``xclip timeline --plot``: the top labels' probabilities over time, as a PNG (matplotlib extra)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OutputError, UsageError
from .timeline import Timeline

if TYPE_CHECKING:
    from .evaluate import EvalReport
from .writers import clock

PLOT_LABELS = 5  # lines drawn: the labels that win the most windows, then the most probable


def plot_timeline(timeline: Timeline, path: Path, labels: int = PLOT_LABELS) -> None:
    """Draw one line per top label over the window centres, time axis in mm:ss."""
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    probabilities = np.stack([window.probabilities for window in timeline.windows])
    centres = [(window.start + window.end) / 2 for window in timeline.windows]
    wins = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    order = np.lexsort((-probabilities.mean(axis=0), -wins))[:labels]
    figure, axes = plt.subplots(figsize=(10, 4), layout="constrained")
    for index in order:
        axes.plot(centres, probabilities[:, index], marker="o", markersize=3, label=timeline.labels[index])
    axes.set_xlim(0, max(timeline.duration, 1e-6))
    axes.set_ylim(bottom=0)
    axes.xaxis.set_major_formatter(FuncFormatter(lambda seconds, _: clock(seconds).split(".")[0]))
    axes.set_xlabel("time (mm:ss, window centres)")
    axes.set_ylabel("probability")
    axes.set_title(f"{Path(timeline.path).name} · {timeline.labelset}", loc="left")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    _save(figure, plt, path)


def plot_confusion(report: EvalReport, path: Path) -> None:
    """A heatmap of the confusion matrix, rows normalised to the share of each true class."""
    plt = _pyplot()
    counts = report.confusion.astype(float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(30.0, 3 + 0.25 * len(report.confusion_labels))
    figure, axes = plt.subplots(figsize=(size, size), layout="constrained")
    image = axes.imshow(shares, cmap="viridis", vmin=0, vmax=1)
    ticks = range(len(report.confusion_labels))
    axes.set_xticks(ticks, report.confusion_labels, rotation=90, fontsize="x-small")
    axes.set_yticks(ticks, report.confusion_labels, fontsize="x-small")
    axes.set_xlabel("predicted (top-1)")
    axes.set_ylabel("true class")
    figure.colorbar(image, ax=axes, shrink=0.6, label="share of the true class")
    _save(figure, plt, path)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'xclip-cli[plot]'") from None
    return plt


def _save(figure: Any, plt: Any, path: Path) -> None:
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the plot ({exc.strerror or exc})") from None
    finally:
        plt.close(figure)
