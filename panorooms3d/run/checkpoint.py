"""Loading checkpoints without running code from them.

A PyTorch checkpoint is a pickle, and unpickling can call any Python function the file names: a
checkpoint from someone else could run code on load. :func:`load_checkpoint` therefore always
uses ``torch.load(weights_only=True)``, whose unpickler only builds tensors and plain values
(dict, list, tuple, str, int, float, bool, None), plus the few plain types allow-listed here
(:data:`SAFE_TYPES`: numpy scalars such as a stored ``np.float64`` metric, and ``pathlib`` paths).
What panorooms3d writes (model/optimizer/scheduler state dicts, iteration counters, config dicts
made by ``dataclasses.asdict``) loads as it is. Anything else is refused with
:class:`CheckpointError` naming the file, and nothing in it is executed.
"""

from __future__ import annotations

import argparse
import pathlib
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

from panorooms3d.run.errors import UserError


class CheckpointError(UserError):
    """The file is missing, is not a checkpoint, or holds objects that could run code."""


def _safe_types() -> list:
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    types: list = [scalar, np.dtype, pathlib.PurePosixPath, pathlib.PosixPath, pathlib.PureWindowsPath,
                   pathlib.WindowsPath]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType",
                     "Int8DType", "UInt8DType", "BoolDType"):
            if hasattr(dtypes, name):
                types.append(getattr(dtypes, name))
    return types


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` a checkpoint safely (``weights_only=True`` plus :data:`SAFE_TYPES`).

    Raises:
        CheckpointError: no such file; not a PyTorch checkpoint; or it holds Python objects other
            than tensors and plain values (loading it could run code), with the file's path in the
            message and what to do.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "no such file"
        raise CheckpointError(f"checkpoint {path}: {what}")
    try:
        with torch.serialization.safe_globals(_safe_types()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0] or type(exc).__name__
        if "Unsupported global" in text or "GLOBAL " in text:
            unsafe = ""
            try:
                names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
                unsafe = f" ({', '.join(names[:5])})" if names else ""
            except Exception:  # noqa: BLE001 - a legacy (non-zip) pickle cannot be listed
                pass
            raise CheckpointError(
                f"checkpoint {path}: refused, it holds Python objects other than tensors and plain values{unsafe}, "
                "and loading them could run code. Use checkpoints written by panorooms3d, or re-save the weights "
                "as a plain state dict (torch.save(model.state_dict(), ...)) where you trust the file") from None
        raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint ({detail})") from None
    except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError, KeyError, IndexError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: not a PyTorch checkpoint or damaged ({detail})") from None


def named_checkpoint(option: str) -> Callable[[str], tuple[str, Path]]:
    """An argparse ``type`` for ``option NAME=CHECKPOINT``: gives ``(NAME, Path)`` when the file exists.

    A value without ``=``, with an empty name or path, or naming no file is refused with an
    ``argparse.ArgumentTypeError`` that names ``option`` and the value, so argparse prints it as a usage
    error. The file is only checked to exist here; :func:`load_checkpoint` checks what it holds.
    """

    def parse(text: str) -> tuple[str, Path]:
        name, sep, path = text.partition("=")
        if not sep or not name or not path:
            raise argparse.ArgumentTypeError(f"{option} takes NAME=CHECKPOINT, got {text!r}")
        if not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"{option} {name}: no such checkpoint: {path}")
        return name, Path(path)

    return parse


#: The plain types allow-listed on top of torch's own (built on first use; numpy is imported lazily).
SAFE_TYPES = "numpy scalars (numpy._core.multiarray.scalar, numpy.dtype and numeric dtypes), pathlib paths"
