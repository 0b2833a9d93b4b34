"""The example job's confusion-matrix plot (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence


def plot_confusion(y_true: Sequence[str], y_pred: Sequence[str], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(y_true) | set(y_pred))
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    k = len(labels)
    # Colour by share of each true label (rows), annotate with counts, so that
    # small labels stay visible next to a dominant one.
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=float), where=totals > 0)
    side = max(6.0, 0.42 * k + 3.5)
    fig, ax = plt.subplots(figsize=(side, side * 0.92))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    font = 9 if k <= 12 else 7
    ax.set_xticklabels(labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("true intent")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            if matrix[i, j]:
                ax.text(
                    j,
                    i,
                    str(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=font - 1,
                    color="white" if shares[i, j] > 0.6 else "black",
                )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true intent")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
