"""What every llmprof figure shares: matplotlib (loaded on first use; ``pip install 'llmprof[plot]'``), the size
of a panel, the colours of its series, a series downsampled to the pixel columns of a panel, and the PNG
written. Never imports torch."""

from __future__ import annotations

from typing import IO, Any

import numpy as np

from llmprof.errors import PlotUnavailable

DPI = 100
PANEL_SIZE = (12.0, 4.2)  # inches per panel: 1200 x 420 px
PLOT_COLUMNS = 1000  # bins of a downsampled series: about one per pixel column of a panel's axes
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def check_available() -> None:
    """Raise PlotUnavailable now, before any work, when matplotlib is missing."""
    pyplot()


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed); PlotUnavailable without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable("plots need matplotlib: pip install 'llmprof[plot]'") from exc
    return plt


def save_png(plt: Any, fig: Any, out: IO[bytes], top: float = 0.97) -> None:
    """``fig`` laid out below its title (the top ``1 - top`` of its height) and written to ``out`` as PNG."""
    fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
    fig.savefig(out, format="png")
    plt.close(fig)


def envelope(x: np.ndarray, y: np.ndarray, columns: int = PLOT_COLUMNS) -> tuple[np.ndarray, ...]:
    """``(x, low, high)`` of the series ``y`` over sorted ``x`` in at most ``columns`` bins of equal width in
    x (about one pixel column each): each bin's middle x and its smallest and largest y. A plot of it costs
    the same for a million points as for a thousand, and hides no spike."""
    edges = np.linspace(x[0], x[-1], columns + 1)
    bins = np.minimum(np.searchsorted(edges, x, side="right") - 1, columns - 1)
    starts = np.flatnonzero(np.diff(bins, prepend=-1))
    ends = np.append(starts[1:], len(x)) - 1
    return (x[starts] + x[ends]) / 2, np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
