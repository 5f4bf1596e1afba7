"""Is a 3D convolution's weight gradient right under bf16 autocast on this CPU? torch's ``F.conv3d`` (oneDNN) and
the project's ``layers.conv3d`` against float64, over kernel sizes, input shapes and channel counts.

    .venv/bin/python benchmark/diagnosis/conv3d_bf16_grad.py benchmark/results/diagnosis/conv3d-bf16-grad-epyc.json

For each shape: the largest |bf16 - float64| / max |float64| of the weight gradient over a few random draws (bf16
inputs give about 1e-2; wrong gradients are off by 1 or more; null where it was infinite or NaN). Written because SparseConv's bf16 training stopped
with a NaN on an AMD EPYC with AVX512-BF16 (2026-12-06): its deepest level (a 3^3 kernel over 2 x 2 x 2 voxels)
got weight gradients of up to 1e35 now and then and wrong ones every step (docs/performance.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from panorooms3d.nn.layers import conv3d


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def relative_error(conv, channels: int, size: tuple[int, int, int], kernel: int, draws: int, seed: int) -> float:
    """Largest relative error of ``conv``'s bf16-autocast weight gradient against float64 over ``draws`` draws."""
    g = torch.Generator().manual_seed(seed)
    pad = kernel // 2
    worst = 0.0
    for _ in range(draws):
        x = torch.randn(1, channels, *size, generator=g)
        w = (torch.randn(channels, channels, kernel, kernel, kernel, generator=g) * 0.05).requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x, w, padding=pad)
        up = torch.randn(out.shape, generator=g)
        (grad,) = torch.autograd.grad((out.float() * up).sum(), [w])
        w64 = w.detach().double().requires_grad_()
        (ref,) = torch.autograd.grad((F.conv3d(x.double(), w64, padding=pad) * up.double()).sum(), [w64])
        err = float((grad.double() - ref).abs().max() / ref.abs().max())
        worst = max(worst, err if err == err else float("inf"))  # NaN counts as wrong
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the JSON to write")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.05, help="a relative error above this counts as wrong")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    shapes = list(itertools.product([2, 3, 5], [1, 2, 3, 4, 6, 8], [1, 2, 4, 8], [2, 5, 8], [16, 32, 64]))
    for kernel, d, h, w, channels in shapes:
        size = (d, h, w)
        torch_err = relative_error(F.conv3d, channels, size, kernel, args.draws, seed=len(rows))
        ours = relative_error(conv3d, channels, size, kernel, args.draws, seed=len(rows))
        rows.append({"kernel": kernel, "size": list(size), "channels": channels,
                     "kernel_exceeds_input": any(kernel > s for s in size),
                     "torch_rel_err": torch_err, "layers_conv3d_rel_err": ours})
    wrong = [r for r in rows if not r["torch_rel_err"] <= args.tolerance]
    summary = {
        "cpu": _cpu_name(), "torch": torch.__version__, "threads": 1, "draws": args.draws,
        "tolerance": args.tolerance, "shapes": len(rows),
        "torch_wrong": len(wrong),
        "torch_wrong_where_the_kernel_exceeds_the_input": sum(r["kernel_exceeds_input"] for r in wrong),
        "shapes_where_the_kernel_exceeds_the_input": sum(r["kernel_exceeds_input"] for r in rows),
        "layers_conv3d_wrong": sum(not r["layers_conv3d_rel_err"] <= args.tolerance for r in rows),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    head = json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=1)[:-2]
    strict = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]
    tmp.write_text(head + ',\n "rows": [\n' + ",\n".join("  " + json.dumps(r, allow_nan=False) for r in strict)
                   + "\n ]\n}\n")
    tmp.replace(args.out)
    print({k: v for k, v in summary.items() if k != "rows"})


if __name__ == "__main__":
    main()
