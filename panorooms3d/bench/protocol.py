"""Benchmark protocols as data: ``benchmark/protocols/<name>.toml`` selected by name.

A protocol is a named set of settings for the benchmark's stages -- the official code's
(``official``) or this project's (``project``) -- so that the choice between them is a value in a
config, never an ``if official:`` branch. A protocol file has the sections ``[train]``,
``[teacher]``, ``[distill]`` and ``[eval]``; a suite names one with ``protocol = "..."`` and
:func:`panorooms3d.bench.suite.load_suite` lays the suite's own sections over the protocol's (a
suite's key wins), so the values become fields of ``TrainConfig``, ``DistillConfig``, the teacher
cache and :func:`panorooms3d.bench.evaluate.evaluate`.

The pieces the values select (each a plain function chosen by its value):

==================  ===========================  =================================================
key                 values                       selects
==================  ===========================  =================================================
kd_normalisation    ``official`` / ``project``   :func:`panorooms3d.nn.losses.distillation_loss`
kd_mask             ``none`` / ``hit``           which pixels the KD term sums over
projection          ``official-emission`` / ...  :func:`panorooms3d.bench.distill.project_logits`
schedule            ``multistep`` / ``constant``  :func:`panorooms3d.bench.train.make_scheduler`
teacher_input       ``bgr`` / ``rgb``            the channel order fed to the 2D teacher
input_encoding      ``official`` / ``project``   :data:`panorooms3d.bench.data.ENCODINGS`
weights             ``official`` / ``project``   :data:`panorooms3d.bench.metrics.ROOM_WEIGHTS`
round_per_room      true / false                 per-room rounding to 0.01 (the official eval.py)
pad_to              1 / (default 32)             free-space padding before the model in evaluation
==================  ===========================  =================================================
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

#: Sections of a protocol file.
SECTIONS = ("train", "teacher", "distill", "eval")
#: The folder of the shipped protocol files (``benchmark/protocols`` at the repository root).
PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "benchmark" / "protocols"
#: The protocol of a suite without a ``protocol`` key.
DEFAULT_PROTOCOL = "project"


class ProtocolError(ValueError):
    """An unknown protocol name or a malformed protocol file; the message names the file."""


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol file.

    Attributes:
        name: the protocol's name (its file stem).
        description: one line.
        path: the file it was read from.
        sections: {"train"|"teacher"|"distill"|"eval": {key: value}}.
    """

    name: str
    description: str
    path: Path
    sections: dict = field(default_factory=dict)

    def section(self, name: str) -> dict:
        """A copy of one section's settings ({} when the file has none)."""
        if name not in SECTIONS:
            raise KeyError(f"no protocol section {name!r}; sections: {', '.join(SECTIONS)}")
        return dict(self.sections.get(name, {}))

    def apply(self, name: str, settings: dict) -> dict:
        """``settings`` laid over section ``name``: the protocol's values as defaults, ``settings`` win."""
        return {**self.section(name), **settings}


def available_protocols(directory: Path | None = None) -> list[str]:
    """Names of the protocol files in ``directory`` (default :data:`PROTOCOL_DIR`)."""
    d = Path(directory) if directory is not None else PROTOCOL_DIR
    return sorted(p.stem for p in d.glob("*.toml"))


def load_protocol(name: str, directory: Path | None = None) -> Protocol:
    """Read protocol ``name`` (``<directory>/<name>.toml``; default directory :data:`PROTOCOL_DIR`).

    Raises:
        ProtocolError: no such protocol (the message lists the available ones), invalid TOML, or
            unknown sections.
    """
    d = Path(directory) if directory is not None else PROTOCOL_DIR
    path = d / f"{name}.toml"
    if not path.is_file():
        raise ProtocolError(f"unknown protocol {name!r}: no {path}; available: {', '.join(available_protocols(d))}")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: not valid TOML: {exc}") from exc
    bad = sorted(set(data) - {"name", "description", *SECTIONS})
    if bad:
        raise ProtocolError(f"{path}: unknown key(s) {', '.join(bad)}; "
                            f"allowed: name, description, {', '.join(SECTIONS)}")
    sections = {}
    for s in SECTIONS:
        v = data.get(s, {})
        if not isinstance(v, dict):
            raise ProtocolError(f"{path}: [{s}] must be a table")
        sections[s] = v
    if str(data.get("name", name)) != name:
        raise ProtocolError(f"{path}: name = {data['name']!r} differs from the file name {name!r}")
    return Protocol(name=name, description=str(data.get("description", "")), path=path, sections=sections)
