"""``panorooms3d models``: list the named models and profile one on CPU.

``panorooms3d models`` lists name, family, parameters (M), the paper's count and the difference.
``panorooms3d models profile NAME --size S`` builds the model in a fresh Python subprocess and reports
parameters, output shape, CPU latency (median of ``--repeats`` timed forwards after one warm-up, under
``torch.no_grad``) and peak memory. Memory is the resident-set high-water mark (``resource.getrusage``
``ru_maxrss``) of that subprocess: ``peak_rss_mb`` is the whole process (Python + torch + model + input +
forward), ``forward_peak_mb`` the increase of the high-water mark during the first forward (activations and
allocator growth). A fresh process is needed because ``ru_maxrss`` never goes down.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from typing import Any

import click

from panorooms3d.nn.registry import build_model, count_parameters, get_spec, list_models

__all__ = ["models", "parse_size", "profile_model"]


def parse_size(text: str) -> tuple[int, int, int]:
    """Parse ``"S"`` or ``"XxYxZ"`` (voxels) into (X, Y, Z); raises ValueError on anything else."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {text!r} is not S or XxYxZ (integers)") from None
    if len(dims) == 1:
        dims = dims * 3
    if len(dims) != 3 or min(dims) < 1:
        raise ValueError(f"size {text!r} must be one positive integer S or three (XxYxZ)")
    return dims[0], dims[1], dims[2]


def _rss_mb() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def _profile_worker(request: dict[str, Any]) -> dict[str, Any]:
    """Run inside the fresh subprocess: build, warm up, time. Returns the result dict."""
    import time

    import torch

    threads = int(request.get("threads") or os.cpu_count() or 1)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(request["name"], num_classes=request["num_classes"], in_channels=request["in_channels"]).eval()
    x = torch.randn(1, request["in_channels"], *request["shape"])
    dtype = request.get("dtype", "float32")
    rss_before = _rss_mb()
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
        for i in range(request["warmup"] + request["repeats"]):
            t0 = time.perf_counter()
            y = model(x)
            dt = time.perf_counter() - t0
            if i == 0:
                rss_after_first = _rss_mb()
            if i >= request["warmup"]:
                times.append(dt)
            out_shape = list(y.shape)
            del y
    return {
        "name": request["name"],
        "params": count_parameters(model),
        "input_shape": list(x.shape),
        "output_shape": out_shape,
        "threads": threads,
        "dtype": dtype,
        "latency_s": statistics.median(times),
        "latencies_s": times,
        "peak_rss_mb": _rss_mb(),
        "forward_peak_mb": max(0.0, rss_after_first - rss_before),
        "memory_method": "ru_maxrss of a fresh subprocess (high-water mark of resident memory)",
    }


def profile_model(
    name: str, shape: tuple[int, int, int], threads: int | None = None, repeats: int = 3, warmup: int = 1,
    num_classes: int = 30, in_channels: int = 4, dtype: str = "float32", timeout: float | None = None,
) -> dict[str, Any]:
    """Profile one forward of a registered 3D model on a (1, in_channels, X, Y, Z) block in a fresh subprocess.

    Args:
        name: registry name (or TOML path).
        shape: (X, Y, Z) in voxels.
        threads: torch intra-op threads (default: all cores).
        repeats: timed forwards after ``warmup`` untimed ones; latency is their median, in seconds.
        dtype: ``"float32"`` or ``"bfloat16"`` (CPU autocast).
        timeout: seconds before the subprocess is killed (None = no limit).

    Returns:
        dict with ``params`` (int), ``output_shape``, ``latency_s``, ``latencies_s``, ``peak_rss_mb``,
        ``forward_peak_mb`` (MiB), ``threads`` and ``memory_method``.

    Raises:
        RuntimeError: the subprocess failed (message holds the end of its stderr).
    """
    request = {
        "name": name, "shape": list(shape), "threads": threads, "repeats": int(repeats), "warmup": int(warmup),
        "num_classes": num_classes, "in_channels": in_channels, "dtype": dtype,
    }
    code = (
        "import json, sys\n"
        "from panorooms3d.nn.commands import _profile_worker\n"
        "print('@@RESULT@@' + json.dumps(_profile_worker(json.loads(sys.argv[1]))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(request)], capture_output=True, text=True, timeout=timeout
    )
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line[len("@@RESULT@@"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"profiling {name} at {shape} failed (exit {proc.returncode}): " + " | ".join(tail))


def _count_without_weights(spec: Any) -> int:
    """Parameter count of a spec, built on the meta device (no memory, no init) when the class allows it."""
    import torch

    try:
        with torch.device("meta"):
            return count_parameters(build_model(spec))
    except Exception:  # noqa: BLE001 - some constructors compute on tensors: build for real
        return count_parameters(build_model(spec))


def _fmt_m(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


@click.group(name="models", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List the named models (models/*.toml) with their parameter counts against the paper's.

    \b
    Examples:
      panorooms3d models
      panorooms3d models profile 3dseg-t --size 128
    """
    if ctx.invoked_subcommand is not None:
        return
    try:
        specs = list_models()
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    rows = []
    for spec in specs:
        row: dict[str, Any] = {
            "name": spec.name, "family": spec.family, "params": None, "params_m": None,
            "paper_params_m": spec.paper_params, "diff_pct": None, "description": spec.description, "error": None,
        }
        try:
            n = _count_without_weights(spec)
            row["params"] = n
            row["params_m"] = n / 1e6
            if spec.paper_params:
                row["diff_pct"] = 100.0 * (n / 1e6 - spec.paper_params) / spec.paper_params
        except Exception as e:  # noqa: BLE001 - one broken family must not hide the others
            row["error"] = str(e)
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<16} {'family':<12} {'params (M)':>11} {'paper (M)':>10} {'diff':>8}")
    for r in rows:
        if r["error"]:
            params, diff = "n/a", ""
        else:
            params = _fmt_m(r["params_m"])
            diff = "" if r["diff_pct"] is None else f"{r['diff_pct']:+.2f}%"
        click.echo(f"{r['name']:<16} {r['family']:<12} {params:>11} {_fmt_m(r['paper_params_m']):>10} {diff:>8}")
        if r["error"]:
            click.echo(f"  ({r['error']})")


@models.command(name="profile")
@click.argument("name")
@click.option("--size", "size_text", default="128", show_default=True,
              help="Block size in voxels: S (an SxSxS cube) or XxYxZ.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: all cores).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed forwards after one warm-up; latency is their median.")
@click.option("--bf16", is_flag=True, help="Run under torch.autocast('cpu', dtype=bfloat16).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def profile(name: str, size_text: str, threads: int | None, repeats: int, bf16: bool, as_json: bool) -> None:
    """Profile one CPU forward of model NAME on a 1x4xSxSxS block: params, output shape, latency, peak memory.

    Runs in a fresh subprocess; memory is that process's ru_maxrss high-water mark.
    """
    try:
        shape = parse_size(size_text)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--size") from e
    try:
        spec = get_spec(name)
    except KeyError as e:
        raise click.ClickException(e.args[0]) from e
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    if not spec.is_3d:
        raise click.ClickException(f"model {name!r} is a {spec.family} (2D) model; profile takes 3D models")
    try:
        result = profile_model(name, shape, threads=threads, repeats=repeats, dtype="bfloat16" if bf16 else "float32")
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e
    result["family"] = spec.family
    result["paper_params"] = spec.paper_params
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"model          {result['name']} ({spec.family})")
    paper = f" (paper {spec.paper_params}M)" if spec.paper_params else ""
    click.echo(f"params         {result['params']:,} = {result['params'] / 1e6:.4f}M{paper}")
    click.echo(f"input          {'x'.join(map(str, result['input_shape']))} ({result['dtype']})")
    click.echo(f"output         {'x'.join(map(str, result['output_shape']))}")
    click.echo(f"latency        {result['latency_s']:.3f} s (median of {len(result['latencies_s'])}, "
               f"{result['threads']} threads)")
    click.echo(f"peak memory    {result['peak_rss_mb']:.0f} MiB process, +{result['forward_peak_mb']:.1f} MiB "
               "during the forward (ru_maxrss)")
