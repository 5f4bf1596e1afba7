"""Reports of benchmark runs: result tables (Markdown, CSV) in the paper's column order, and plots.

Tables put our numbers in the paper's Table 1 column order (model, aAcc, mIoU, mAcc, Dice, Fscore,
Precision, Recall, params) with our parameter count (``count_parameters``, millions) beside the
paper's; the pooled and void-excluded mIoU follow in a separately labelled table (they are not
the paper's protocol), and the paper's own numbers for the same rows in a third table.

Each number is the mean over the run's seeds with its 95% interval (a two-level bootstrap over test
rooms and seeds, :mod:`panorooms3d.bench.stats`): Markdown shows ``56.7 [54.1, 59.0]``, CSV has
``<column>_lo`` and ``<column>_hi`` after the original columns, with the number of seeds and test
rooms of each row. A suite's claims (``[[claim]]``) get a table of their own: the difference with its
interval and the verdict (reproduced, contradicted, unresolved).

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

from panorooms3d.bench import stats
from panorooms3d.bench.metrics import METRICS
from panorooms3d.run.atomic import atomic_path

#: The paper's column names for :data:`METRICS` (Table 1 header).
COLUMNS = ("aAcc", "mIoU", "mAcc", "Dice", "Fscore", "Precision", "Recall")
TABLE_HEADER = ("model", *COLUMNS, "params (M)", "paper params (M)", "seeds", "test rooms")
#: columns with an interval: the seven metrics, then the two other aggregations of mIoU
CI_COLUMNS = (*COLUMNS, "mIoU_pooled", "mIoU_void_excluded")
CSV_HEADER = ("model", *COLUMNS, "params_M", "paper_params_M", "mIoU_pooled", "mIoU_void_excluded", "n_seeds",
              "n_rooms", *(f"{c}_{end}" for c in CI_COLUMNS for end in ("lo", "hi")))
PAPER_HEADER = ("model", *COLUMNS, "params (M)")
CLAIMS_HEADER = ("claim", "source", "metric", "difference", "verdict", "seeds")
CLAIMS_CSV_HEADER = ("better", "worse", "relation", "margin", "metric", "aggregation", "source", "text", "difference",
                     "difference_lo", "difference_hi", "verdict", "n_rooms", "n_seeds_better", "n_seeds_worse",
                     "paired_seeds")
_AGG_NAMES = {"paper": "", "pooled": " (pooled)", "void_excluded": " (void excluded)"}


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{float(v):.{digits}f}"


def _fmt_ci(v, lo, hi) -> str:
    """``56.7 [54.1, 59.0]``, or the value alone (2 decimals) when there is no interval."""
    if v is None or lo is None or hi is None or not all(math.isfinite(float(x)) for x in (v, lo, hi)):
        return _fmt(v)
    return f"{float(v):.1f} [{float(lo):.1f}, {float(hi):.1f}]"


def _finite(v) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


# -- reading a suite's results ---------------------------------------------------------------------------------


def metrics_files(run_dir: Path, name: str = "metrics.json") -> list[tuple[str, Path]]:
    """The evaluation files of one run of a suite, as (seed label, path), seeds in numeric order.

    ``<run_dir>/seed<k>/<name>`` (several seeds: label ``k``) when any exists, else
    ``<run_dir>/<name>`` (one seed: label ``single``), else nothing. ``name``: ``metrics.json``
    (the volume evaluation) or ``panorama_metrics.json`` (the same predictions on the panorama pixels).
    """
    run_dir = Path(run_dir)
    seeded = []
    for p in run_dir.glob(f"seed*/{name}"):
        k = p.parent.name[len("seed"):]
        if k.lstrip("-").isdigit():
            seeded.append((int(k), p))
    if seeded:
        return [(str(k), p) for k, p in sorted(seeded)]
    single = run_dir / name
    return [("single", single)] if single.is_file() else []


def summarise_run(results: list[dict], seeds: list[str] | None = None, *, n_boot: int = stats.N_BOOT) -> dict:
    """One table row's numbers from a run's evaluations (one ``metrics.json`` dict per seed).

    Returns a dict for :func:`table_rows`: ``metrics``, ``pooled``, ``void_excluded`` (the suite's
    numbers, averaged over seeds), ``params``, ``paper_params``, ``n_seeds``, ``n_rooms``,
    ``intervals`` {aggregation: {metric key: (lo, hi)}} and ``records`` (a
    :class:`~panorooms3d.bench.stats.RunRecords`, None when the files hold no usable per-room records,
    e.g. seeds evaluated on different rooms).
    """
    def mean_of(section: str) -> dict:
        out = {}
        for key in METRICS:
            vals = [_finite((r.get(section) or {}).get(key)) for r in results]
            out[key] = None if any(v is None for v in vals) else float(np.mean(vals))
        return out

    first_run = results[0].get("run") or {}
    entry = {"metrics": mean_of("metrics"), "pooled": mean_of("pooled"), "void_excluded": mean_of("void_excluded"),
             "params": first_run.get("params"), "paper_params": first_run.get("paper_params"),
             "n_seeds": len(results), "n_rooms": len(results[0].get("rooms") or []) or None, "intervals": {},
             "records": None}
    try:
        rec = stats.RunRecords.from_metrics(results, seeds)
    except (ValueError, KeyError, TypeError):
        return entry
    entry["records"] = rec
    wanted = [("paper", k) for k in METRICS] + [("pooled", "mIoU"), ("void_excluded", "mIoU")]
    for agg, key in wanted:
        if rec.has(key, agg):
            iv = stats.bootstrap(rec, key, agg, n_boot=n_boot)
            if iv.defined:
                entry["intervals"].setdefault(agg, {})[key] = (iv.lo, iv.hi)
    return entry


def claim_rows(claims: list, records: dict, labels: dict, *, n_boot: int = stats.N_BOOT) -> list[dict]:
    """One row per claim: the paired difference (better - worse) with its interval and the verdict.

    Args:
        claims: :class:`~panorooms3d.bench.stats.Claim` objects. records: run name -> RunRecords (or None /
            absent when the run has no results). labels: run name -> table label.

    A claim whose runs lack results (or comparable per-room records) gets verdict ``–`` and a ``note``.
    """
    rows = []
    for c in claims:
        row = {"claim": c, "better_label": labels.get(c.better, c.better), "worse_label": labels.get(c.worse, c.worse),
               "mean": None, "lo": None, "hi": None, "verdict": "–", "note": "", "n_rooms": None,
               "n_seeds": (None, None), "paired_seeds": None}
        a, b = records.get(c.better), records.get(c.worse)
        missing = [labels.get(n, n) for n, r in ((c.better, a), (c.worse, b)) if r is None]
        if missing:
            row["note"] = f"no results for {', '.join(missing)}"
        else:
            try:
                cmp = stats.compare(a, b, c.metric, c.aggregation, relation=c.relation, margin=c.margin, n_boot=n_boot)
            except ValueError as e:
                row["note"] = str(e)
            else:
                row.update(mean=cmp.mean, lo=_finite(cmp.lo), hi=_finite(cmp.hi), verdict=cmp.verdict,
                           n_rooms=cmp.n_rooms, n_seeds=cmp.n_seeds, paired_seeds=cmp.paired_seeds)
        rows.append(row)
    return rows


def _claim_name(row: dict) -> str:
    c = row["claim"]
    rel = "≥" if c.relation == ">=" else ">"
    margin = f" (margin {c.margin:g})" if c.margin else ""
    name = f"{row['better_label']} {rel} {row['worse_label']}{margin}"
    return f"{name}: {c.text}" if c.text else name


def claims_markdown(rows: list[dict]) -> str:
    """The claims table (Markdown) with a line on how to read it."""
    lines = []
    for r in rows:
        c = r["claim"]
        diff = "–" if r["mean"] is None else (f"{r['mean']:+.1f}" if r["lo"] is None else
                                             f"{r['mean']:+.1f} [{r['lo']:+.1f}, {r['hi']:+.1f}]")
        paired = " paired" if r["paired_seeds"] and max(r["n_seeds"]) > 1 else ""
        seeds = "–" if r["n_rooms"] is None else f"{r['n_seeds'][0]} vs {r['n_seeds'][1]}{paired}, {r['n_rooms']} rooms"
        verdict = r["verdict"] + (f" ({r['note']})" if r["note"] else "")
        lines.append([_claim_name(r), c.source or "–", c.metric + _AGG_NAMES[c.aggregation], diff, verdict, seeds])
    return _md_table(CLAIMS_HEADER, lines)


def claims_csv(rows: list[dict]) -> str:
    """The claims as CSV (CLAIMS_CSV_HEADER; empty where missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CLAIMS_CSV_HEADER)
    num = lambda v: "" if v is None else f"{float(v):.4f}"  # noqa: E731
    for r in rows:
        c = r["claim"]
        w.writerow([c.better, c.worse, c.relation, f"{c.margin:g}", c.metric, c.aggregation, c.source, c.text,
                    num(r["mean"]), num(r["lo"]), num(r["hi"]), r["verdict"], r["n_rooms"] or "",
                    "" if r["n_seeds"][0] is None else r["n_seeds"][0],
                    "" if r["n_seeds"][1] is None else r["n_seeds"][1],
                    "" if r["paired_seeds"] is None else str(r["paired_seeds"]).lower()])
    return buf.getvalue()


def table_rows(results: list[dict]) -> list[dict]:
    """Rows of the suite table from per-run results.

    Args:
        results: one dict per run: ``label``, ``metrics`` (the seven METRICS or None when not run),
            ``pooled`` and ``void_excluded`` (dicts with ``mIoU``), ``params`` (count), ``paper_params`` (M),
            ``paper`` (the paper's numbers keyed by COLUMNS names or METRICS names, or None); optionally
            ``n_seeds``, ``n_rooms`` and ``intervals`` ({"paper"|"pooled"|"void_excluded": {metric: (lo, hi)}},
            as :func:`summarise_run` gives them).

    Returns:
        dicts keyed by CSV_HEADER (numbers, None where missing) plus ``paper`` (dict keyed by COLUMNS).
    """
    rows = []
    for r in results:
        m = r.get("metrics") or {}
        iv = r.get("intervals") or {}
        row = {"model": r["label"]}
        for col, key in zip(COLUMNS, METRICS):
            row[col] = m.get(key)
            row[f"{col}_lo"], row[f"{col}_hi"] = (iv.get("paper") or {}).get(key, (None, None))
        row["params_M"] = None if r.get("params") is None else r["params"] / 1e6
        row["paper_params_M"] = r.get("paper_params")
        row["mIoU_pooled"] = (r.get("pooled") or {}).get("mIoU")
        row["mIoU_void_excluded"] = (r.get("void_excluded") or {}).get("mIoU")
        for col, agg in (("mIoU_pooled", "pooled"), ("mIoU_void_excluded", "void_excluded")):
            row[f"{col}_lo"], row[f"{col}_hi"] = (iv.get(agg) or {}).get("mIoU", (None, None))
        row["n_seeds"] = r.get("n_seeds")
        row["n_rooms"] = r.get("n_rooms")
        paper = r.get("paper") or {}
        row["paper"] = {col: paper.get(col, paper.get(key)) for col, key in zip(COLUMNS, METRICS)}
        row["paper"]["params"] = paper.get("params", r.get("paper_params"))
        rows.append(row)
    return rows


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _count(v) -> str:
    return "–" if v is None else str(int(v))


def markdown_table(rows: list[dict], *, title: str = "", note: str = "", reference: str = "",
                   claims: list[dict] | None = None) -> str:
    """The suite's Markdown report: our table, the other aggregations, the claims, the paper's numbers."""
    def ci(r, col):
        return _fmt_ci(r[col], r.get(f"{col}_lo"), r.get(f"{col}_hi"))

    ours = _md_table(TABLE_HEADER, [[r["model"], *(ci(r, c) for c in COLUMNS), _fmt(r["params_M"]),
                                     _fmt(r["paper_params_M"]), _count(r.get("n_seeds")), _count(r.get("n_rooms"))]
                                    for r in rows])
    other = _md_table(("model", "mIoU pooled over all voxels", "mIoU void excluded (volume-weighted)"),
                      [[r["model"], ci(r, "mIoU_pooled"), ci(r, "mIoU_void_excluded")] for r in rows])
    parts = [f"# {title}" if title else "# Results", ""]
    if note:
        parts += [note, ""]
    parts += ["Ours (%, per room then volume-weighted over rooms: the paper's protocol; params counted, "
              "millions, beside the paper's count). Each value is the mean over the row's seeds with its 95% "
              "interval in brackets (bootstrap over test rooms and seeds; over rooms only for one seed; none for "
              "one room and one seed):", "", ours, "",
              "Other aggregations of the same predictions (NOT the paper's protocol, for reference):", "", other]
    if claims:
        parts += ["", "Claims, tested on these runs: difference (first row minus second) of the "
                  "paired statistic on the same resampled test rooms (and seeds, when both runs have the same "
                  "ones), with its 95% interval. reproduced: the interval lies on the claimed side of 0 (of "
                  "-margin for ≥ with a margin); contradicted: entirely on the other side; unresolved: it "
                  "contains 0 (for ≥ without a margin: no measurable difference, which is consistent with the "
                  "claim but does not show it).", "", claims_markdown(claims)]
    if any(any(v is not None for v in r["paper"].values()) for r in rows):
        paper = _md_table(PAPER_HEADER, [[r["model"], *(_fmt(r["paper"][c]) for c in COLUMNS),
                                          _fmt(r["paper"]["params"])] for r in rows])
        parts += ["", f"The paper's numbers for the same rows ({reference or 'paper'}; PanoRooms3D test set, "
                  "not this dataset):", "", paper]
    return "\n".join(parts) + "\n"


def csv_table(rows: list[dict]) -> str:
    """Our numbers as CSV (CSV_HEADER columns: the original ones first, then seeds, rooms and the intervals'
    ``_lo``/``_hi``; empty where missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in rows:
        w.writerow([r["model"], *("" if r.get(c) is None else (str(int(r[c])) if c in ("n_seeds", "n_rooms")
                                                               else f"{float(r[c]):.4f}") for c in CSV_HEADER[1:])])
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


def training_curves(out: Path) -> list[dict]:
    """The validation curves of a suite's trainings: block training and room-level runs.

    Reads ``<out>/pretrain/*/train_log.jsonl``, ``<out>/runs/**/distill/distill_log.jsonl`` and the
    2D teacher's ``<out>/teacher/train_log.jsonl`` (lines with ``val_mIoU``; the teacher's are panorama mIoU). Returns one dict per training with ``name``, ``kind``, ``points``
    ([(iteration, val mIoU)]), ``final`` (the last value), ``at_80`` (the last value at or before
    80% of the final iteration) and ``gain_last_20`` (final - at_80: flattened when < 1 point).
    """
    import json as _json

    out = Path(out)
    def pretrain_name(folder: Path, cfg: dict | None) -> str:
        if cfg is None:
            return folder.name
        name = cfg.get("model", folder.name)
        overrides = dict(cfg.get("model_overrides") or {})
        if overrides.get("skip") is False:
            name += "-noskip"
            del overrides["skip"]
        if overrides:  # two trainings of one model that differ in its settings must not share a name
            name += " (" + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) + ")"
        if cfg.get("labelled_fraction", 1.0) < 1.0:
            name += f" (labelled {cfg['labelled_fraction']:g})"
        if cfg.get("rooms"):  # a training on some of the split's rooms (TrainConfig.rooms)
            name += f" (rooms {', '.join(cfg['rooms'])})"
        if cfg.get("block_teacher"):  # taught by another training: named by its folder, not the absolute path
            name += f" (block teacher {Path(cfg['block_teacher']).parent.name})"
        return f"{name} seed{cfg.get('seed', 0)}"

    def differing(folders: list[Path], cfgs: list[dict]) -> list[str]:
        """For block trainings that share a name: the settings in which each differs from the others.

        A setting a training's ``config.json`` lacks (written before TrainConfig had it) has its default value.
        """
        from dataclasses import MISSING, fields

        from panorooms3d.bench.train import TrainConfig

        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
        cfgs = [{**defaults, **c} for c in cfgs]
        keys = sorted({k for c in cfgs for k in c} - {"out", "data", "seed"})
        keys = [k for k in keys if len({_json.dumps(c.get(k), sort_keys=True) for c in cfgs}) > 1]
        labels = [", ".join(f"{k}={c.get(k)}" for k in keys) if keys else f.name for f, c in zip(folders, cfgs)]
        return labels if len(set(labels)) == len(labels) else [f.name for f in folders]

    folders = [p.parent for p in sorted(out.glob("pretrain/*/train_log.jsonl"))]
    cfgs = [_json.loads((f / "config.json").read_text()) if (f / "config.json").is_file() else None for f in folders]
    names = [pretrain_name(f, c) for f, c in zip(folders, cfgs)]
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    for name, same in groups.items():  # e.g. two block shapes of one model and seed: name each by what sets it apart
        if len(same) > 1:
            labels = differing([folders[i] for i in same], [cfgs[i] or {} for i in same])
            for i, label in zip(same, labels):
                names[i] = f"{name} ({label})"
    logs = [("block training", name, f / "train_log.jsonl") for name, f in zip(names, folders)]
    logs += [("room level", str(p.parent.parent.relative_to(out / "runs")), p)
             for p in sorted(out.glob("runs/**/distill/distill_log.jsonl"))]
    if (out / "teacher" / "train_log.jsonl").is_file():
        logs.append(("teacher (panorama pixels)", "teacher", out / "teacher" / "train_log.jsonl"))
    rows = []
    for kind, name, path in logs:
        points = validation_curve(_json.loads(line) for line in path.read_text().splitlines())
        if points:
            rows.append({"name": name, "kind": kind, **curve_summary(points)})
    return rows


def validation_curve(records) -> list[tuple[int, float]]:
    """[(iteration, val mIoU)] of a training log's records (its lines with ``val_mIoU``), sorted by iteration; a
    resumed run's repeated iteration counts once, with its last value."""
    points = {int(r["iteration"]): float(r["val_mIoU"]) for r in records if r.get("val_mIoU") is not None}
    return sorted(points.items())


def curve_summary(points: list[tuple[int, float]]) -> dict:
    """What says whether a validation curve has flattened (issue 14: the last 20% of its iterations add
    < 1 point).

    ``points``: [(iteration, val mIoU)], sorted by iteration, not empty. Returns ``points``,
    ``iterations`` (the last), ``final`` (its value), ``at_80`` (the last value at or before 80% of
    the last iteration; None when there is none) and ``gain_last_20`` (final - at_80, or None).
    """
    last_it, final = points[-1]
    before = [v for i, v in points if i <= 0.8 * last_it]
    at_80 = before[-1] if before else None
    return {"points": points, "iterations": last_it, "final": final, "at_80": at_80,
            "gain_last_20": None if at_80 is None else final - at_80}


def curves_markdown(rows: list[dict]) -> str:
    """A table: training, iterations, final validation mIoU, the gain of the last 20% of its iterations."""
    body = [[r["name"], r["kind"], str(r["iterations"]), _fmt(r["final"]), _fmt(r["gain_last_20"]),
             "–" if r["gain_last_20"] is None else ("yes" if r["gain_last_20"] < 1.0 else "no")] for r in rows]
    return _md_table(("training", "kind", "iterations", "final val mIoU", "gain in the last 20%", "flat (< 1 point)"),
                     body)


def plot_training_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Validation mIoU against iteration for every training (block training left, room level right;
    a panel only for a kind of training the suite has)."""
    plt = _pyplot()
    kinds = [k for k in ("block training", "room level") if any(r["kind"] == k for r in rows)] or ["block training"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.5 * len(kinds), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for r in [r for r in rows if r["kind"] == kind]:
            its, vals = zip(*r["points"])
            ax.plot(its, vals, marker=".", label=r["name"], linewidth=1)
        ax.set_title(f"{kind}: validation mIoU")
        ax.set_xlabel("iteration")
        ax.set_ylabel("val mIoU (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
    if title:
        fig.suptitle(title)
    _savefig(fig, path)
    plt.close(fig)


def teacher_markdown(metrics: dict) -> str:
    """One line on the 2D teacher's own score (panorama mIoU on the evaluation split)."""
    m, run = metrics.get("metrics", {}), metrics.get("run", {})
    trained = run.get("trained_on") or {}
    rooms = ""
    if isinstance(trained, dict) and trained:
        count = lambda k: len(trained[k]) if isinstance(trained.get(k), list) else trained.get(k)  # noqa: E731
        total, main, extra = count("rooms"), count("main_rooms"), count("extra_rooms")
        if total is not None:
            parts = [f"{main} of the dataset's {trained.get('split', 'training')} rooms" if main is not None else "",
                     f"{extra} panorama-only rooms" if extra else ""]
            detail = " + ".join(p for p in parts if p)
            rooms = f"; trained on the panoramas of {total} rooms" + (f": {detail}" if detail else "")
    params = run.get("params")
    size = "?" if params is None else f"{params / 1e6:.2f} M"
    return (f"The 2D teacher ({run.get('model', 'teacher')}, {size} parameters{rooms}) on the "
            f"{metrics.get('split', 'test')} rooms' panoramas: mIoU {_fmt(m.get('mIoU'))}, aAcc {_fmt(m.get('aAcc'))}, "
            f"void-excluded mIoU {_fmt((metrics.get('void_excluded') or {}).get('mIoU'))} "
            f"({len(metrics.get('rooms', []))} panoramas).")


PANORAMA_HEADER = ("model", "panorama mIoU", "aAcc", "mAcc", "teacher − model (mIoU)", "seeds", "panoramas")


def panorama_markdown(runs: list[tuple[str, list[dict], list[str]]], teacher: dict | None,
                      oracle: dict | None, *, n_boot: int = stats.N_BOOT) -> str:
    """The runs, the 2D teacher and the 3D ground truth on the same panorama pixels (Markdown; "" without runs).

    Args:
        runs: (label, the run's ``panorama_metrics.json`` dicts, their seed labels) per run; runs
            without files are left out.
        teacher: the teacher's ``metrics.json`` (:func:`panorooms3d.bench.teacher.evaluate_teacher`) or None.
        oracle: ``panorama_oracle.json`` (the ground-truth volume seen from the cameras) or None.

    Each value is the mean over panoramas (and seeds) with its 95% bootstrap interval. "teacher −
    model" is the paired difference on the same resampled panoramas: above 0 (interval included)
    the teacher knows more than that model on these pixels, which is what distillation needs.
    """
    runs = [(label, res, seeds) for label, res, seeds in runs if res]
    if not runs:
        return ""
    t_rec = None
    if teacher is not None:
        try:
            t_rec = stats.RunRecords.from_metrics([teacher], ["single"])
        except (ValueError, KeyError, TypeError):
            t_rec = None

    def line(label: str, results: list[dict], seeds: list[str], versus: bool) -> list[str]:
        e = summarise_run(results, seeds, n_boot=n_boot)
        iv = e["intervals"].get("paper", {})
        cells = [label] + [_fmt_ci(e["metrics"].get(k), *iv.get(k, (None, None))) for k in ("mIoU", "aAcc", "mAcc")]
        diff = "–"
        if versus and t_rec is not None and e["records"] is not None:
            try:
                c = stats.compare(t_rec, e["records"], "mIoU", "paper", n_boot=n_boot)
            except ValueError:
                pass
            else:
                diff = (f"{c.mean:+.1f}" if not math.isfinite(c.lo) else f"{c.mean:+.1f} [{c.lo:+.1f}, {c.hi:+.1f}]")
        return cells + [diff, _count(e["n_seeds"]), _count(e["n_rooms"])]

    rows = []
    if teacher is not None:
        rows.append(line("2D teacher (its own prediction)", [teacher], ["single"], False))
    if oracle is not None:
        rows.append(line("3D ground truth seen from the camera (the ceiling of a 3D model here)", [oracle], ["single"],
                         True))
    rows += [line(label, res, seeds, True) for label, res, seeds in runs]
    note = ("On the panorama pixels (the 2D teacher's unit; NOT the paper's protocol): each run's test predictions "
            "seen from the rooms' panorama cameras (rays to the tsdf's zero crossing, the nearest voxel's class) and "
            "scored against the panorama labels (`panorama_metrics.json`), beside the teacher's own prediction of the "
            "same panoramas. Mean over panoramas (and seeds) with 95% intervals. \"teacher − model\": the paired "
            "difference in mIoU; above 0 the teacher knows more than that model on these pixels, the premise of "
            "distillation.")
    return note + "\n\n" + _md_table(PANORAMA_HEADER, rows) + "\n"
