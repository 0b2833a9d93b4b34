"""The report's per-epoch metrics plot (PNG). matplotlib is imported only here."""

from __future__ import annotations

import math
from pathlib import Path

from trainboard.backend.config import RunConfig
from trainboard.backend.events import MetricPoint


def metrics_plot(
    config: RunConfig,
    points: list[MetricPoint],
    baseline: dict[str, float] | None,
    dest: Path,
) -> Path | None:
    """One small panel per followed metric, the baseline as a dashed line."""
    keys = [k for k in config.metrics if any(p.key == k for p in points)]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False)
    for index, key in enumerate(keys):
        ax = axes[index // cols][index % cols]
        series = sorted((p.step, p.value) for p in points if p.key == key)
        steps = [s for s, _ in series]
        ax.plot(steps, [v for _, v in series], marker="o", label="this run")
        if baseline and key in baseline:
            ax.axhline(baseline[key], linestyle="--", color="grey", label="baseline")
        ax.set_title(config.display_name(key))
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(set(steps)) <= 12:
            ax.set_xticks(sorted(set(steps)))
        ax.legend(fontsize="small")
    for index in range(len(keys), rows * cols):
        axes[index // cols][index % cols].axis("off")
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)
    return dest
