"""Report figures: each function returns a matplotlib Figure drawn without pyplot (Agg canvas).

Brain images use nilearn's plotting on nilearn's bundled MNI152 template (no download).
:func:`save_figure` writes a figure atomically as SVG or PNG (from the file's extension).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # nilearn's plotting may touch pyplot: never open a window

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "MAP_THRESHOLD",
    "plot_calibration",
    "plot_carpet",
    "plot_dfnc_windows",
    "plot_fnc",
    "plot_group_qc",
    "plot_motion",
    "plot_network_grid",
    "plot_stability",
    "plot_state_fractions",
    "plot_states",
    "plot_tree",
    "plot_tsnr",
    "save_figure",
]

#: |z| below which network maps are transparent.
MAP_THRESHOLD = 2.0
_PANEL_COLUMNS = 6


def _figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 90) -> Path:
    """Write ``fig`` atomically to ``path`` (SVG or PNG, from its extension); return the path."""
    from workflows.bids.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        # nilearn's figures place their own axes: trim them to what was drawn
        tight = "tight" if fig.get_layout_engine() is None else None
        savefig_reproducible(fig, tmp, name=path.name, format=path.suffix.lstrip("."),
                             dpi=dpi, bbox_inches=tight)
    return path


def savefig_reproducible(fig: Figure, target: str | Path, *, name: str | None = None,
                         **kwargs) -> None:
    """``fig.savefig`` whose bytes depend on the figure only (a resumed run matches exactly).

    SVGs otherwise carry their creation date and random element ids: the date is
    dropped and the ids are salted with the file's final ``name``.
    """
    import matplotlib

    name = name or Path(target).name
    svg = kwargs.get("format", Path(name).suffix.lstrip(".")) == "svg"
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(target, **({"metadata": {"Date": None}} if svg else {}), **kwargs)


@lru_cache(maxsize=1)
def mni_template():
    """nilearn's bundled 2 mm MNI152 template (read from the nilearn package, never downloaded)."""
    from nilearn.datasets import load_mni152_template

    return load_mni152_template(resolution=2)


def plot_motion(confounds: pd.DataFrame, t_r: float, fd_threshold: float | None = None) -> Figure:
    """Framewise displacement and the six rigid-body parameters of one run."""
    fig = _figure(10, 4.2)
    ax_fd, ax_mp = fig.subplots(2, 1, sharex=True)
    time = np.arange(len(confounds)) * t_r
    fd = confounds.get("framewise_displacement", pd.Series(np.nan, index=confounds.index))
    ax_fd.plot(time, fd.fillna(0).to_numpy(), color="k", lw=1)
    if fd_threshold is not None:
        ax_fd.axhline(fd_threshold, color="tab:red", ls="--", lw=1,
                      label=f"censoring threshold {fd_threshold} mm")
        ax_fd.legend(loc="upper right", fontsize=8)
    ax_fd.set_ylabel("FD (mm)")
    for column in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"):
        if column in confounds:
            values = confounds[column].fillna(0).to_numpy()
            scale = 50.0 if column.startswith("rot") else 1.0  # radians -> mm on a 50 mm sphere
            ax_mp.plot(time, values * scale, lw=1, label=column)
    ax_mp.set_ylabel("motion (mm)")
    ax_mp.set_xlabel("time (s)")
    if ax_mp.lines:
        ax_mp.legend(ncol=6, fontsize=7, loc="upper right")
    return fig


def plot_tsnr(tsnr_img) -> Figure:
    """Axial slices of a temporal SNR map."""
    from nilearn.plotting import plot_img

    fig = _figure(10, 2.4, layout=None)  # nilearn places its own axes
    finite = np.asarray(tsnr_img.dataobj)
    vmax = float(np.nanpercentile(finite[finite > 0], 98)) if np.any(finite > 0) else 1.0
    plot_img(tsnr_img, display_mode="z", cut_coords=7, cmap="viridis", colorbar=True,
             vmin=0, vmax=vmax, figure=fig, black_bg=True, title="tSNR")
    return fig


def plot_carpet(bold_img, mask_img, t_r: float) -> Figure:
    """Carpet plot (voxels x time) of a denoised BOLD run."""
    from nilearn.plotting import plot_carpet as nilearn_carpet

    fig = _figure(10, 4, layout=None)
    nilearn_carpet(bold_img, mask_img=mask_img, t_r=t_r, figure=fig, standardize=False,
                   title="denoised BOLD")
    return fig


@lru_cache(maxsize=1)
def _template_brain():
    """The MNI template cropped to the brain, and its data (cached: one per process)."""
    from nilearn.image import crop_img

    template = crop_img(mni_template())
    return template, np.asarray(template.dataobj, dtype=np.float32)


def plot_network_grid(maps_img, titles: Sequence[str]) -> Figure:
    """One axial slice per network (through its peak) on the MNI template, |z| > ``MAP_THRESHOLD``.

    Each map is resampled to nilearn's MNI152 template (2 mm, cropped to the brain) with
    nilearn, then drawn with plain matplotlib: a panel costs milliseconds, so grids of a
    hundred networks stay cheap.
    """
    from nilearn.image import index_img, resample_to_img

    n_maps = maps_img.shape[3]
    if len(titles) != n_maps:
        raise ValueError(f"'titles' must have one entry per map ({n_maps}). Got {len(titles)}.")
    template, background = _template_brain()
    columns = min(_PANEL_COLUMNS, n_maps)
    rows = int(np.ceil(n_maps / columns))
    fig = _figure(1.9 * columns, 2.1 * rows, layout=None)  # a layout engine costs seconds here
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.25 / rows, wspace=0.05,
                        hspace=0.25)
    data = np.asarray(maps_img.dataobj)
    vmax = float(np.nanpercentile(np.abs(data), 99.9)) or 1.0
    for index in range(n_maps):
        ax = fig.add_subplot(rows, columns, index + 1)
        volume = np.asarray(resample_to_img(index_img(maps_img, index), template,
                                            interpolation="linear", force_resample=True,
                                            copy_header=True).dataobj)
        k = int(np.unravel_index(np.nanargmax(np.abs(volume)), volume.shape)[2])
        z_mm = float((template.affine @ np.array([0, 0, k, 1.0]))[2])
        ax.imshow(background[:, :, k].T, origin="lower", cmap="gray", interpolation="nearest")
        overlay = np.ma.masked_less(np.abs(volume[:, :, k]), MAP_THRESHOLD)
        overlay = np.ma.array(volume[:, :, k], mask=overlay.mask)
        ax.imshow(overlay.T, origin="lower", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                  interpolation="nearest")
        ax.set_title(str(titles[index]), fontsize=8)
        ax.text(0.02, 0.02, f"z={z_mm:.0f}", transform=ax.transAxes, color="w", fontsize=6)
        ax.set_axis_off()
    return fig


def _group_blocks(groups: Sequence[str]) -> list[tuple[str, int, int]]:
    """Runs of equal group names as ``(name, start, stop)``."""
    blocks: list[tuple[str, int, int]] = []
    for index, name in enumerate(groups):
        if blocks and blocks[-1][0] == name:
            blocks[-1] = (name, blocks[-1][1], index + 1)
        else:
            blocks.append((name, index, index + 1))
    return blocks


def _draw_matrix(ax, matrix: np.ndarray, groups: Sequence[str], labels: Sequence[str] | None,
                 vmax: float, title: str):
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    blocks = _group_blocks(groups)
    for _, start, _stop in blocks[1:]:
        ax.axhline(start - 0.5, color="k", lw=0.8)
        ax.axvline(start - 0.5, color="k", lw=0.8)
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    else:
        centers = [(start + stop - 1) / 2 for _, start, stop in blocks]
        names = [name for name, _, _ in blocks]
        ax.set_xticks(centers, names, rotation=90, fontsize=7)
        ax.set_yticks(centers, names, fontsize=7)
    ax.set_title(title, fontsize=9)
    return image


def plot_fnc(matrix: pd.DataFrame, groups: Sequence[str], title: str) -> Figure:
    """A static FNC matrix with lines between network groups (domains or scales)."""
    n_nodes = len(matrix)
    labels = list(matrix.index) if n_nodes <= 40 else None
    size = 5 + 0.08 * n_nodes
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot()
    values = matrix.to_numpy(dtype=float)
    vmax = float(np.nanmax(np.abs(values))) or 1.0
    image = _draw_matrix(ax, values, groups, labels, vmax, title)
    ax2 = ax.secondary_yaxis("right")
    blocks = _group_blocks(groups)
    ax2.set_yticks([(start + stop - 1) / 2 for _, start, stop in blocks],
                   [name for name, _, _ in blocks], fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.7, label="Fisher z", pad=0.12)
    return fig


def plot_dfnc_windows(windows: pd.DataFrame, t_r: float) -> Figure:
    """Sliding-window FNC as an image: connections (rows) by windows (columns)."""
    values = windows.to_numpy(dtype=float).T
    fig = _figure(10, 4)
    ax = fig.add_subplot()
    vmax = float(np.nanpercentile(np.abs(values), 99)) or 1.0
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                      interpolation="nearest",
                      extent=(0, values.shape[1] * t_r, values.shape[0], 0))
    ax.set_xlabel("window start (s)")
    ax.set_ylabel(f"connection ({values.shape[0]} pairs)")
    fig.colorbar(image, ax=ax, label="FNC")
    return fig


def plot_states(states: Mapping[str, pd.DataFrame], fractions: Mapping[str, float],
                groups: Sequence[str]) -> Figure:
    """dFNC state centroids side by side, titled with their mean fraction of windows."""
    fig = _figure(3.6 * len(states) + 1, 3.9)
    axes = np.atleast_1d(fig.subplots(1, len(states)))
    vmax = max(float(np.nanmax(np.abs(m.to_numpy(dtype=float)))) for m in states.values()) or 1.0
    image = None
    for ax, (name, matrix) in zip(axes, states.items(), strict=True):
        fraction = fractions.get(name)
        title = name + (f" ({100 * fraction:.0f}% of windows)" if fraction is not None else "")
        image = _draw_matrix(ax, matrix.to_numpy(dtype=float), groups, None, vmax, title)
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="FNC")
    return fig


def plot_state_fractions(fractions: pd.DataFrame) -> Figure:
    """Fraction of windows in each state, one dot per participant."""
    fig = _figure(1.6 * fractions.shape[1] + 2, 3)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # horizontal jitter of the dots only
    for index, column in enumerate(fractions.columns):
        values = fractions[column].dropna().to_numpy(dtype=float)
        ax.scatter(index + rng.uniform(-0.15, 0.15, len(values)), values, s=12, alpha=0.7)
        ax.hlines(values.mean() if len(values) else np.nan, index - 0.3, index + 0.3, color="k")
    ax.set_xticks(range(fractions.shape[1]), list(fractions.columns))
    ax.set_ylabel("fraction of windows")
    return fig


def plot_group_qc(qc: pd.DataFrame) -> Figure:
    """Mean framewise displacement and tSNR after denoising, one dot per run."""
    fig = _figure(9, 3)
    ax_fd, ax_tsnr = fig.subplots(1, 2)
    for ax, column, label in ((ax_fd, "mean_fd", "mean FD (mm)"),
                              (ax_tsnr, "tsnr_after", "tSNR after denoising")):
        values = pd.to_numeric(qc.get(column, pd.Series(dtype=float)), errors="coerce")
        ax.bar(range(len(values)), values.fillna(0).to_numpy(), color="tab:blue")
        ax.set_ylabel(label)
        ax.set_xticks(range(len(values)), list(qc["participant_id"]), rotation=90, fontsize=6)
    return fig


def plot_tree(labels: Mapping[int, pd.DataFrame]) -> Figure:
    """Cross-scale tree: networks per scale (columns), each joined to its coarser-scale parent."""
    scales = sorted(labels)
    height = max(len(table) for table in labels.values())
    fig = _figure(2.5 * len(scales) + 1, 0.22 * height + 1.5)
    ax = fig.add_subplot()
    position: dict[tuple[int, str], tuple[float, float]] = {}  # (scale, label): (x, y)
    for column, scale in enumerate(scales):
        table = labels[scale]
        ys = np.linspace(0, height - 1, len(table)) if len(table) > 1 else [height / 2]
        for y, label in zip(ys, table["label"].astype(str), strict=True):
            position[scale, label] = (column, y)
            ax.plot(column, y, "o", color="tab:blue", ms=4)
            first = column == 0  # coarsest scale: label on the left, away from the edges
            ax.annotate(label, (column, y), xytext=(-4 if first else 4, 0),
                        textcoords="offset points", fontsize=6, va="center",
                        ha="right" if first else "left")
    for coarse, scale in zip(scales[:-1], scales[1:]):  # parents are at the next coarser scale
        table = labels[scale]
        parents = table["parent"] if "parent" in table else pd.Series("n/a", index=table.index)
        for label, parent in zip(table["label"].astype(str), parents.astype(str), strict=True):
            if (coarse, parent) in position:
                (x0, y0), (x1, y1) = position[coarse, parent], position[scale, label]
                ax.plot([x0, x1], [y0, y1], color="0.5", lw=0.7)
    ax.set_xticks(range(len(scales)), [f"scale {s}" for s in scales])
    ax.set_yticks([])
    ax.invert_yaxis()
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return fig


def plot_calibration(calibration: pd.DataFrame, title: str) -> Figure:
    """Reliability diagram: observed against predicted probability of the positive class."""
    fig = _figure(3.6, 3.4)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="perfect")
    ax.plot(calibration["prob_pred"], calibration["prob_true"], "o-", color="tab:blue",
            label="cross-validated")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def plot_stability(labels: pd.DataFrame, title: str) -> Figure:
    """ICASSO stability (Iq) of each network, kept networks in blue."""
    fig = _figure(max(4.0, 0.25 * len(labels) + 1.5), 2.8)
    ax = fig.add_subplot()
    keep = labels["keep"].astype(str).str.lower().isin(["true", "1"]) if "keep" in labels else (
        pd.Series(True, index=labels.index))
    ax.bar(range(len(labels)), pd.to_numeric(labels["stability"], errors="coerce").fillna(0),
           color=np.where(keep, "tab:blue", "0.7"))
    ax.set_xticks(range(len(labels)), list(labels["label"].astype(str)), rotation=90, fontsize=6)
    ax.set_ylim(0, 1)
    ax.set_ylabel("stability (Iq)")
    ax.set_title(title, fontsize=9)
    return fig
