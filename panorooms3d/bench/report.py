"""Reports of benchmark runs: result tables (Markdown, CSV) in the paper's column order, and plots.

Tables put our numbers in the paper's Table 1 column order (model, aAcc, mIoU, mAcc, Dice, Fscore,
Precision, Recall, params) with our parameter count (``count_parameters``, millions) beside the
paper's; the pooled and void-excluded mIoU follow in a separately labelled table (they are not
the paper's protocol), and the paper's own numbers for the same rows in a third table.

Plots (matplotlib, Agg): per-class IoU bars, the row-normalised confusion matrix, and sample
predictions (a horizontal slice of input colour / ground truth / prediction, and the prediction
projected into the room's panorama beside the ground-truth panorama).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from panorooms3d.bench.metrics import METRICS
from panorooms3d.run.atomic import atomic_path

#: The paper's column names for :data:`METRICS` (Table 1 header).
COLUMNS = ("aAcc", "mIoU", "mAcc", "Dice", "Fscore", "Precision", "Recall")
TABLE_HEADER = ("model", *COLUMNS, "params (M)", "paper params (M)")
CSV_HEADER = ("model", *COLUMNS, "params_M", "paper_params_M", "mIoU_pooled", "mIoU_void_excluded")
PAPER_HEADER = ("model", *COLUMNS, "params (M)")


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{float(v):.{digits}f}"


def table_rows(results: list[dict]) -> list[dict]:
    """Rows of the suite table from per-run results.

    Args:
        results: one dict per run: ``label``, ``metrics`` (the seven METRICS or None when not run),
            ``pooled`` and ``void_excluded`` (dicts with ``mIoU``), ``params`` (count), ``paper_params`` (M),
            ``paper`` (the paper's numbers keyed by COLUMNS names or METRICS names, or None).

    Returns:
        dicts keyed by CSV_HEADER (numbers, None where missing) plus ``paper`` (dict keyed by COLUMNS).
    """
    rows = []
    for r in results:
        m = r.get("metrics") or {}
        row = {"model": r["label"]}
        for col, key in zip(COLUMNS, METRICS):
            row[col] = m.get(key)
        row["params_M"] = None if r.get("params") is None else r["params"] / 1e6
        row["paper_params_M"] = r.get("paper_params")
        row["mIoU_pooled"] = (r.get("pooled") or {}).get("mIoU")
        row["mIoU_void_excluded"] = (r.get("void_excluded") or {}).get("mIoU")
        paper = r.get("paper") or {}
        row["paper"] = {col: paper.get(col, paper.get(key)) for col, key in zip(COLUMNS, METRICS)}
        row["paper"]["params"] = paper.get("params", r.get("paper_params"))
        rows.append(row)
    return rows


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(rows: list[dict], *, title: str = "", note: str = "", reference: str = "") -> str:
    """The suite's Markdown report: our table, the other aggregations, the paper's numbers."""
    ours = _md_table(TABLE_HEADER, [[r["model"], *(_fmt(r[c]) for c in COLUMNS), _fmt(r["params_M"]),
                                     _fmt(r["paper_params_M"])] for r in rows])
    other = _md_table(("model", "mIoU pooled over all voxels", "mIoU void excluded (volume-weighted)"),
                      [[r["model"], _fmt(r["mIoU_pooled"]), _fmt(r["mIoU_void_excluded"])] for r in rows])
    parts = [f"# {title}" if title else "# Results", ""]
    if note:
        parts += [note, ""]
    parts += ["Ours (%, per room then volume-weighted over rooms: the paper's protocol; params counted, "
              "millions, beside the paper's count):", "", ours, "",
              "Other aggregations of the same predictions (NOT the paper's protocol, for reference):", "", other]
    if any(any(v is not None for v in r["paper"].values()) for r in rows):
        paper = _md_table(PAPER_HEADER, [[r["model"], *(_fmt(r["paper"][c]) for c in COLUMNS),
                                          _fmt(r["paper"]["params"])] for r in rows])
        parts += ["", f"The paper's numbers for the same rows ({reference or 'paper'}; PanoRooms3D test set, "
                  "not this dataset):", "", paper]
    return "\n".join(parts) + "\n"


def csv_table(rows: list[dict]) -> str:
    """Our numbers as CSV (CSV_HEADER columns; empty where missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        w.writerow([r["model"], *("" if r[c] is None else f"{float(r[c]):.4f}" for c in CSV_HEADER[1:])])
    return buf.getvalue()


def paper_csv(rows: list[dict]) -> str:
    """The paper's numbers for the same rows as CSV (model, seven metrics, params)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("model", *COLUMNS, "params_M"))
    for r in rows:
        p = r["paper"]
        w.writerow([r["model"], *("" if p[c] is None else p[c] for c in (*COLUMNS, "params"))])
    return buf.getvalue()


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(Path(path)) as tmp:
        Path(tmp).write_text(text)


# -- plots -----------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _savefig(fig, path: Path) -> None:
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def plot_per_class_iou(per_class_iou: dict, path: Path, title: str = "") -> None:
    """Bar plot (PNG) of IoU (%) per class; classes never seen nor predicted (None/NaN) are marked n/a."""
    plt = _pyplot()
    names = list(per_class_iou)
    vals = [per_class_iou[n] for n in names]
    fig, ax = plt.subplots(figsize=(max(8, 0.35 * len(names)), 4))
    ys = [0.0 if v is None or not math.isfinite(v) else float(v) for v in vals]
    bars = ax.bar(range(len(names)), ys, color="tab:blue")
    for b, v in zip(bars, vals):
        if v is None or not math.isfinite(v):
            ax.text(b.get_x() + b.get_width() / 2, 1, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "per-class IoU (pooled over the evaluated rooms)")
    _savefig(fig, path)
    plt.close(fig)


def plot_confusion(confusion, class_names, path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix (rows: ground truth, columns: prediction) as a PNG heat map."""
    plt = _pyplot()
    cm = np.asarray(confusion, np.float64)
    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * k), max(5, 0.3 * k)))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=6)
    ax.set_yticks(range(k), class_names, fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title or "confusion (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _savefig(fig, path)
    plt.close(fig)


def slice_level(y: np.ndarray) -> int:
    """The z index of the horizontal slice to show: the one with the most distinct classes (ties: most labelled)."""
    scores = [(len(np.unique(y[:, :, k])), int((y[:, :, k] > 0).sum()), -abs(k - y.shape[2] // 2))
              for k in range(y.shape[2])]
    return int(max(range(len(scores)), key=lambda k: scores[k]))


def project_labels(sample, pred: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class ids seen from the panorama camera: (labels (H, W) int64, hit (H, W) bool).

    Rays are marched through the room's tsdf with :func:`render_equirect` (zero crossing); each hit takes the
    class of the nearest voxel to the surface point (labels are not interpolated).
    """
    import torch

    from panorooms3d.geometry import equirect_directions
    from panorooms3d.panorama.projection import render_equirect

    tsdf = torch.as_tensor(sample.tsdf)
    res = render_equirect(tsdf, torch.zeros((1, *tsdf.shape)), origin=sample.origin, voxel_size=sample.voxel_size,
                          camera=sample.camera, height=height, width=width)
    hit = res.hit.numpy()
    pts = np.asarray(sample.camera) + res.depth.numpy()[..., None] * equirect_directions(height, width)
    idx = np.floor((pts - np.asarray(sample.origin)) / sample.voxel_size).astype(np.int64)
    idx = np.clip(idx, 0, np.array(pred.shape) - 1)
    labels = pred[idx[..., 0], idx[..., 1], idx[..., 2]].astype(np.int64)
    return np.where(hit, labels, 0), hit


def plot_sample(sample, pred: np.ndarray, path: Path, class_set: str = "paper30", title: str = "") -> None:
    """Sample prediction (PNG): slice of input colour / ground truth / prediction, and panoramas.

    Args:
        sample: a :class:`panorooms3d.bench.data.RoomSample`.
        pred: (X, Y, Z) predicted class ids.
    """
    from panorooms3d.taxonomy import get_class_set

    plt = _pyplot()
    colours = get_class_set(class_set).colours
    k = slice_level(sample.y)
    rgb = np.clip((np.moveaxis(sample.x[1:4, :, :, k], 0, -1) + 1) / 2, 0, 1)
    # show x to the right and y up: transpose (x, y) -> (row = y, col = x), origin lower
    panels = [("input colour", rgb), ("ground truth", colours[sample.y[:, :, k]]), ("prediction", colours[pred[:, :, k]])]
    has_pano = sample.panorama_label is not None and sample.camera is not None
    rows = 2 if has_pano else 1
    fig, axes = plt.subplots(rows, 3, figsize=(12, 4 * rows), squeeze=False)
    for ax, (name, img) in zip(axes[0], panels):
        ax.imshow(np.swapaxes(img, 0, 1), origin="lower", interpolation="nearest")
        ax.set_title(f"{name} (z slice {k})")
        ax.set_xlabel("x (voxels)")
        ax.set_ylabel("y (voxels)")
    if has_pano:
        h, w = sample.panorama_label.shape
        proj, hit = project_labels(sample, pred, h, w)
        axes[1, 0].imshow(colours[sample.panorama_label], interpolation="nearest")
        axes[1, 0].set_title("ground-truth panorama")
        axes[1, 1].imshow(colours[proj], interpolation="nearest")
        axes[1, 1].set_title("prediction projected (render_equirect)")
        agree = (proj == sample.panorama_label) & hit
        axes[1, 2].imshow(np.where(hit, agree, np.nan), vmin=0, vmax=1, cmap="RdYlGn", interpolation="nearest")
        axes[1, 2].set_title(f"agreement on hit pixels: {100 * agree.sum() / max(hit.sum(), 1):.1f}%")
        for ax in axes[1]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title or sample.uid)
    _savefig(fig, path)
    plt.close(fig)
