"""Did two runs of one suite train the same weights and score the same? File by file, tensor by tensor.

    .venv/bin/python benchmark/diagnosis/same_suite.py out/cpu-track/bench out/track3k \\
        --out benchmark/results/cpu-track-from-nothing/same-as-recording.json

A suite is meant to be a pure function of its toml and its data: the same seeds draw the same blocks, a
resumed training goes on where it stopped, so a run from nothing, or one cut short and resumed, should end
with the very weights and scores of any other. This checks that on two suite output folders A and B
(``benchmark run --out``):

- every block training in both (``pretrain/<key>/model.pt``), the teacher (``teacher/teacher.pt``) and every
  room-level run (``runs/**/distill/model.pt``): the same tensor names, and each tensor equal
  (``torch.equal``). The files themselves differ: each holds its training's config, whose paths differ;
- every evaluation in both (``runs/**/metrics.json``, ``runs/**/panorama_metrics.json``): the same metrics, void-excluded and pooled scores and
  per-class IoU (exact float equality);
- ``table.csv``, ``claims.csv`` and ``curves.json``: equal (the tables name the dataset given, so the two
  runs must be given datasets of equal bytes, e.g. both built by ``pipelines/cpu-track.sh``).

It reports what is in only one of the two, and exits 1 when anything compared differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from panorooms3d.run.atomic import write_json

SCORES = ("metrics", "void_excluded", "pooled", "per_class_iou")
FILES = ("table.csv", "claims.csv", "curves.json")


def state_of(path: Path) -> dict:
    """The tensors of a saved training (``{"model": state_dict, ...}`` or a bare state dict), loaded as the project
    loads checkpoints: without running code from the file (``run.checkpoint.load_checkpoint``)."""
    from panorooms3d.run.checkpoint import CheckpointError, load_checkpoint

    try:
        saved = load_checkpoint(path)
    except CheckpointError as exc:  # the message names the file and what to do
        raise SystemExit(str(exc)) from None
    state = saved.get("model", saved) if isinstance(saved, dict) else saved
    if not isinstance(state, dict):
        raise SystemExit(f"{path}: not a saved state dict (a {type(state).__name__})")
    return state


def same_tensors(a: Path, b: Path) -> str | None:
    """None when the two files hold equal tensors under equal names, else what differs."""
    import torch

    sa, sb = state_of(a), state_of(b)
    if set(sa) != set(sb):
        return f"tensor names differ: only in A {sorted(set(sa) - set(sb))[:3]}, only in B {sorted(set(sb) - set(sa))[:3]}"
    unequal = [k for k in sa if torch.is_tensor(sa[k]) and not torch.equal(sa[k], sb[k])]
    return f"{len(unequal)} of {len(sa)} tensors differ, e.g. {unequal[0]}" if unequal else None


def same_scores(a: Path, b: Path) -> str | None:
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    if not any(k in ra for k in SCORES):  # equal only because there is nothing to compare
        return f"holds none of {list(SCORES)}"
    differ = [k for k in SCORES if ra.get(k) != rb.get(k)]
    return f"differ in {differ}" if differ else None


def same_file(a: Path, b: Path) -> str | None:
    return None if a.read_bytes() == b.read_bytes() else "the bytes differ"


CHECKS = (  # (what, glob in a suite's out folder, how two of them are compared)
    ("block training", "pretrain/*/model.pt", same_tensors),
    ("teacher", "teacher/teacher.pt", same_tensors),
    ("room-level run", "runs/**/distill/model.pt", same_tensors),
    ("evaluation", "runs/**/metrics.json", same_scores),
    ("evaluation on panorama pixels", "runs/**/panorama_metrics.json", same_scores),
) + tuple((name, name, same_file) for name in FILES)


def compare_suites(a: Path, b: Path) -> dict:
    """``{"a", "b", "checks": {what: {"compared", "same", "differ": {path: why}, "only_a", "only_b"}}, "same"}``."""
    for folder in (a, b):
        if not folder.is_dir():
            raise SystemExit(f"{folder}: no such folder (give two `benchmark run --out` folders)")
    result: dict = {"a": str(a), "b": str(b), "checks": {}}
    for what, pattern, check in CHECKS:
        in_a = {p.relative_to(a).as_posix() for p in a.glob(pattern)}
        in_b = {p.relative_to(b).as_posix() for p in b.glob(pattern)}
        both = sorted(in_a & in_b)
        differ = {rel: why for rel in both if (why := check(a / rel, b / rel)) is not None}
        result["checks"][what] = {"compared": len(both), "same": len(both) - len(differ), "differ": differ,
                                  "only_a": sorted(in_a - in_b), "only_b": sorted(in_b - in_a)}
    result["same"] = all(not c["differ"] for c in result["checks"].values()) and any(
        c["compared"] for c in result["checks"].values())
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path, help="a suite's output folder (benchmark run --out)")
    ap.add_argument("b", type=Path, help="another run of the same suite on the same data")
    ap.add_argument("--out", type=Path, help="write the result here (JSON)")
    args = ap.parse_args(argv)
    result = compare_suites(args.a, args.b)
    for what, c in result["checks"].items():
        only = f"; only in A: {len(c['only_a'])}, only in B: {len(c['only_b'])}" if c["only_a"] or c["only_b"] else ""
        print(f"{what}: {c['same']} of {c['compared']} the same{only}")
        for rel, why in c["differ"].items():
            print(f"  {rel}: {why}")
    print("the same" if result["same"] else "NOT the same")
    if args.out:
        write_json(args.out, result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["same"] else 1)
