"""Host load before and after a batch's moves, as one PNG (hosts x ticks, two panels).

matplotlib draws it (labelled axes and a shared colour scale are what make a heatmap
readable); it is imported only when a picture is drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Above this many hosts the picture shows the busiest ones only (a row would be < 1 px).
MAX_ROWS = 200


def render(
    path: Path, before: np.ndarray, after: np.ndarray, hosts: list[str], ticks: np.ndarray
) -> Path:
    """``before``/``after``: (H, T) utilisation. Writes ``path`` atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = np.arange(len(hosts))
    if len(hosts) > MAX_ROWS:
        rows = np.sort(np.argsort(-before.max(axis=1), kind="stable")[:MAX_ROWS])
    top = max(1.0, float(np.nanmax([before.max(initial=0), after.max(initial=0)])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.5 + 0.18 * len(rows)), sharey=True)
    for ax, data, title in ((axes[0], before, "before"), (axes[1], after, "after moves")):
        image = ax.imshow(
            data[rows], aspect="auto", cmap="magma", vmin=0, vmax=top, interpolation="nearest"
        )
        ax.set_title(f"host load / capacity, {title}")
        ax.set_xlabel("tick")
        step = max(1, len(ticks) // 12)
        ax.set_xticks(range(0, len(ticks), step), [str(t) for t in ticks[::step]])
    axes[0].set_yticks(range(len(rows)), [hosts[i] for i in rows], fontsize=7)
    fig.colorbar(image, ax=axes, label="utilisation (1 = full)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path
