"""Experiment suites: a TOML grid of runs, run end to end and resumably, summarised as the paper's tables.

A suite file (``benchmark/*.toml``; see benchmark/README.md) has::

    name = "table1"                      # used in titles
    extends = "cpu-track.toml"           # optional: another suite whose protocol and sections are the
                                         # defaults here (runs and claims are not inherited)
    description = "..."
    reference = "Table 1"                # where the paper's numbers come from

    [settings]   class_set, seed, seeds, device, workers   (shared by every stage),
                 jobs (how many steps run at once, each in its own process with cores / jobs threads; default 1)
    [train]      TrainConfig fields (block training defaults: iterations, batch_size, block, lr, ...)
    [teacher]    TeacherConfig fields (variant, iterations, lr, height, width, init, model_overrides, ...)
    [distill]    DistillConfig fields (iterations, tau, lr, val_every, val_split, projection, ...)
    [eval]       split, max_voxels, samples (rooms drawn in sample plots, 0 = none), panorama (also score each run
                 on the panorama pixels, the teacher's unit: ``panorama_metrics.json``, and the 3D ground
                 truth seen from the panorama cameras once: ``<out>/panorama_oracle.json``), tta (test-time
                 augmentation, ``none``, ``flips`` or ``d4``: panorooms3d.bench.evaluate.TTA; a run evaluated
                 with another is evaluated again, its former metrics kept as ``metrics.tta-<former>.json``),
                 weights, round_per_room, input_encoding, pad_to (the protocol's: benchmark/protocols/)

    [[run]]
    name = "3dseg-t-dist"                # folder name, unique
    label = "3DSeg-T Dist"               # table row (default: name)
    model = "3dseg-t"
    distill = true                       # 2D-to-3D distillation after block training
    finetune_only = false                # room-level finetuning without KD (Table 3's control)
    skip = true                          # the 3D Segmenter's skip connection (Table 4: false)
    iterations = 20000                   # block-training iterations (else [train])
    seeds = [0, 1, 2]                    # one training per seed (else [settings] seeds, else [settings] seed)
    labelled_fraction = 0.5              # only this share of the training rooms has 3D labels (train and
                                         # distill use CE on those; distillation uses KD on all rooms)
    train = {...}, distill_settings = {...}   # optional per-run overrides of those sections
    paper = {aAcc = 98.82, mIoU = 58.06, ..., params = 0.38}   # the paper's row, for comparison

``run_suite`` runs each run: block training (shared by runs with the same model and training
settings: ``<out>/pretrain/<model>-<hash>/``) -> the teacher once per suite when any run distils
(``<out>/teacher/teacher.pt`` and its cache ``<out>/teacher/cache/``) -> distillation or
finetuning (``<out>/runs/<name>/distill/``) -> evaluation on the eval split
(``<out>/runs/<name>/metrics.json``; with several seeds ``<out>/runs/<name>/seed<k>/...``) -> plots (``per_class_iou.png``, ``confusion.png``,
``samples.png``). Every finished step leaves its file and is skipped when run again; an
interrupted training resumes from its checkpoint. Each step is logged to
``<out>/suite_log.jsonl`` (``done`` with seconds, or ``skipped``; ``stale`` for an evaluation made with another
``[eval] tta``, before it runs again). Finally the tables:
``<out>/table.md``, ``<out>/table.csv`` and ``<out>/paper.csv``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from panorooms3d.bench.distill import DistillConfig
from panorooms3d.bench.teacher import TeacherConfig
from panorooms3d.bench.train import TrainConfig
from panorooms3d.run.atomic import write_json
from panorooms3d.run.checkpoint import load_checkpoint

SECTIONS = ("settings", "train", "teacher", "distill", "eval")
SETTINGS = {"class_set", "seed", "seeds", "device", "workers", "jobs", "schedule_log"}
EVAL_KEYS = {"split", "max_voxels", "samples", "weights", "round_per_room", "input_encoding", "pad_to", "panorama",
             "tta"}
RUN_KEYS = {"name", "label", "model", "distill", "finetune_only", "skip", "iterations", "batch_size", "block", "lr",
            "distill_iterations", "train", "distill_settings", "model_overrides", "paper", "description", "seeds",
            "labelled_fraction", "block_teacher"}
# fields a suite may not set: they are decided by the suite runner
_RUNNER_FIELDS = {"data", "out", "model", "student", "teacher_cache", "init", "model_overrides", "block_teacher"}


class SuiteError(ValueError):
    """A malformed suite file or a bad selection; the message names the file."""


@dataclass
class RunSpec:
    """One row of a suite."""

    name: str
    model: str
    label: str
    distill: bool = False
    finetune_only: bool = False
    skip: bool = True
    train: dict = field(default_factory=dict)
    distill_settings: dict = field(default_factory=dict)
    model_overrides: dict = field(default_factory=dict)
    paper: dict = field(default_factory=dict)
    seeds: list[int] | None = None
    block_teacher: str | None = None  # another run of the suite whose block training teaches this one's (train.py)

    @property
    def room_level(self) -> bool:
        """True when the run finetunes per room after block training (distillation or its control)."""
        return self.distill or self.finetune_only


@dataclass
class Suite:
    """A parsed suite file."""

    path: Path
    name: str
    description: str
    reference: str
    settings: dict
    train: dict
    teacher: dict
    distill: dict
    eval: dict
    runs: list[RunSpec]
    claims: list = field(default_factory=list)  # stats.Claim: [[claim]] entries, checked against the runs
    protocol: str = "project"  # benchmark/protocols/<protocol>.toml: the defaults under the sections above


def _fields(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _check_keys(path: Path, where: str, got: dict, allowed: set[str]) -> None:
    bad = sorted(set(got) - allowed)
    if bad:
        raise SuiteError(f"{path}: unknown key(s) {', '.join(bad)} in {where}; allowed: {', '.join(sorted(allowed))}")


def find_suite(name_or_path: str | Path) -> Path:
    """A suite file: the path as given, else by name (``table1`` -> the repository's benchmark/table1.toml).

    A relative path such as ``benchmark/table1.toml`` is also looked up from the repository root, so
    suites are found from any working folder. Raises SuiteError listing the known suites.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    root = Path(__file__).resolve().parents[2]
    named = root / "benchmark" / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    for candidate in ((root / path) if not path.is_absolute() else path, named):
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in (root / "benchmark").glob("*.toml"))
    raise SuiteError(f"suite file not found: {name_or_path} (no such file, and no benchmark/{named.name}); give a suite "
                     f"file or one of the suites by name: {', '.join(known) or 'none found'}")


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file.

    Raises:
        SuiteError: the file is missing, not TOML, or has unknown sections/keys, duplicate or missing run names.
    """
    path = find_suite(path)
    data = _read_with_base(path, ())
    sections = {s: data.get(s, {}) for s in SECTIONS}
    for s, v in sections.items():
        if not isinstance(v, dict):
            raise SuiteError(f"{path}: [{s}] must be a table")
    protocol = _protocol(path, data.get("protocol", "project"))
    for s in ("train", "teacher", "distill", "eval"):  # the protocol's values are defaults; the suite's keys win
        defaults = protocol.section(s)
        if s == "train":  # block-training keys take effect once TrainConfig has them
            defaults = {k: v for k, v in defaults.items() if k in _fields(TrainConfig)}
        sections[s] = {**defaults, **sections[s]}
    _check_keys(path, "[settings]", sections["settings"], SETTINGS)
    _check_keys(path, "[train]", sections["train"], _fields(TrainConfig) - _RUNNER_FIELDS - SETTINGS)
    _check_keys(path, "[teacher]", sections["teacher"], (_fields(TeacherConfig) - _RUNNER_FIELDS - SETTINGS) | {"init", "model_overrides", "teacher_input"})
    _check_keys(path, "[distill]", sections["distill"], _fields(DistillConfig) - _RUNNER_FIELDS - SETTINGS)
    _check_keys(path, "[eval]", sections["eval"], EVAL_KEYS)
    _check_tta(path, sections["eval"])
    _check_training_settings(path, "[train]", sections["train"])
    _check_training_settings(path, "[teacher]", sections["teacher"])
    _check_training_settings(path, "[distill]", sections["distill"])
    raw_runs = data.get("run", [])
    if not isinstance(raw_runs, list) or not raw_runs:
        raise SuiteError(f"{path}: no [[run]] entries")
    runs, seen = [], set()
    for i, r in enumerate(raw_runs):
        where = f"[[run]] #{i + 1}"
        _check_keys(path, where, r, RUN_KEYS)
        if "name" not in r or "model" not in r:
            raise SuiteError(f"{path}: {where} needs a name and a model")
        if r["name"] in seen:
            raise SuiteError(f"{path}: run name {r['name']!r} is used twice")
        seen.add(r["name"])
        train = dict(r.get("train", {}))
        for key in ("iterations", "batch_size", "block", "lr"):
            if key in r:
                train[key] = r[key]
        _check_keys(path, f"{where} train", train, _fields(TrainConfig) - _RUNNER_FIELDS - SETTINGS)
        _check_training_settings(path, f"{where} train", train, base=sections["train"])
        dset = dict(r.get("distill_settings", {}))
        if "distill_iterations" in r:
            dset["iterations"] = r["distill_iterations"]
        if "labelled_fraction" in r:
            train["labelled_fraction"] = dset["labelled_fraction"] = float(r["labelled_fraction"])
        seeds = r.get("seeds")
        if seeds is not None and (not isinstance(seeds, list) or not seeds
                                  or not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds)
                                  or len(set(seeds)) != len(seeds)):
            raise SuiteError(f"{path}: {where} seeds must be a non-empty list of distinct integers, got {seeds!r}")
        _check_keys(path, f"{where} distill_settings", dset, _fields(DistillConfig) - _RUNNER_FIELDS - SETTINGS)
        _check_training_settings(path, f"{where} distill_settings", dset)
        overrides = dict(r.get("model_overrides", {}))
        if not r.get("skip", True):
            overrides["skip"] = False
        if r.get("distill") and r.get("finetune_only"):
            raise SuiteError(f"{path}: run {r['name']!r} sets both distill and finetune_only")
        runs.append(RunSpec(name=str(r["name"]), model=str(r["model"]), label=str(r.get("label", r["name"])),
                            distill=bool(r.get("distill", False)), finetune_only=bool(r.get("finetune_only", False)),
                            skip=bool(r.get("skip", True)), train=train, distill_settings=dset,
                            model_overrides=overrides, paper=dict(r.get("paper", {})),
                            seeds=None if seeds is None else [int(v) for v in seeds],
                            block_teacher=None if r.get("block_teacher") is None else str(r["block_teacher"])))
    _check_block_teachers(path, runs, sections["settings"])
    return Suite(path=path, name=str(data.get("name", path.stem)), description=str(data.get("description", "")),
                 reference=str(data.get("reference", "")), runs=runs, claims=_claims(path, data, runs),
                 protocol=protocol.name, **sections)


def _check_block_teachers(path: Path, runs: list[RunSpec], settings: dict) -> None:
    """Each ``block_teacher`` names another run of the suite: one with one seed and no teacher of its own."""
    by_name = {r.name: r for r in runs}
    for run in runs:
        if run.block_teacher is None:
            continue
        teacher = by_name.get(run.block_teacher)
        where = f"{path}: run {run.name!r}: block_teacher = {run.block_teacher!r}"
        if teacher is None:
            raise SuiteError(f"{where} names no run of the suite; runs: {', '.join(by_name)}")
        if teacher is run or teacher.block_teacher is not None:
            raise SuiteError(f"{where}: the teacher must be another run trained on labels alone (no block_teacher)")
        if len(run_seeds(teacher, settings)) != 1:
            raise SuiteError(f"{where}: the teacher run has seeds {run_seeds(teacher, settings)}; give it one "
                             "(seeds = [0]), whose block training teaches every seed of this run")


def _check_training_settings(path: Path, where: str, section: dict, base: dict | None = None) -> None:
    """A weight-average decay or ramp, or a learning-rate cooldown, out of range is refused when the suite is read,
    naming the file and the table (not hours in, when the training that uses it starts). A cooldown is checked
    with the iterations and warm-up the training will have: the section's own, else those of ``base`` (a run's
    ``train`` over the suite's ``[train]``)."""
    from panorooms3d.bench.train import check_adam_beta2, check_cooldown, check_ema, check_ema_ramp

    merged = {**(base or {}), **section}
    try:
        if "ema" in section:
            check_ema(section["ema"])
        if "ema_ramp" in section:
            check_ema_ramp(section["ema_ramp"])
        if "adam_beta2" in section:
            check_adam_beta2(section["adam_beta2"])
        if "cooldown" in merged:
            iterations, warmup = merged.get("iterations"), merged.get("warmup", 0)
            check_cooldown(merged["cooldown"], iterations if isinstance(iterations, int) else None,
                           warmup if isinstance(warmup, int) else 0)
    except ValueError as exc:
        raise SuiteError(f"{path}: {where}: {exc}") from None


def _check_tta(path: Path, section: dict) -> None:
    from panorooms3d.bench.evaluate import TTA

    if "tta" in section and section["tta"] not in TTA:
        raise SuiteError(f"{path}: [eval] tta = {section['tta']!r}: choose one of {', '.join(map(repr, TTA))}")


def _read_with_base(path: Path, chain: tuple[Path, ...]) -> dict:
    """The suite file's TOML, with ``extends = "base.toml"`` resolved.

    A suite that extends another takes the base's ``protocol`` and sections (``[settings]``,
    ``[train]``, ``[teacher]``, ``[distill]``, ``[eval]``) as defaults, key by key; its own keys win.
    Its runs, claims, name, description and reference are its own: a derived suite is a new
    experiment on the base's settings (e.g. benchmark/cpu-track-kd.toml on the CPU track's). The base
    path is relative to the suite file (else a suite name, as for ``benchmark run``).
    """
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: not valid TOML: {e}") from e
    _check_keys(path, "the top level", data, {"name", "description", "reference", "run", "claim", "protocol",
                                              "extends", *SECTIONS})
    if "extends" not in data:
        return data
    base_name = data.pop("extends")
    if not isinstance(base_name, str) or not base_name:
        raise SuiteError(f"{path}: extends must name a suite file, got {base_name!r}")
    local = path.parent / base_name
    try:
        base_path = (local if local.is_file() else find_suite(base_name)).resolve()
    except SuiteError as e:
        raise SuiteError(f"{path}: extends = {base_name!r}: {e}") from e
    chain = (*chain, path.resolve())
    if base_path in chain:
        raise SuiteError(f"{path}: extends = {base_name!r} makes a cycle: "
                         + " -> ".join(str(p) for p in (*chain, base_path)))
    base = _read_with_base(base_path, chain)
    for s in SECTIONS:
        if not isinstance(data.get(s, {}), dict) or not isinstance(base.get(s, {}), dict):
            continue  # reported by load_suite's section check
        data[s] = {**base.get(s, {}), **data.get(s, {})}
    if "protocol" in base and "protocol" not in data:
        data["protocol"] = base["protocol"]
    return data


def _protocol(path: Path, name):
    """The suite's protocol (benchmark/protocols/<name>.toml); a bad name is a SuiteError naming the suite."""
    from panorooms3d.bench.protocol import ProtocolError, load_protocol

    try:
        return load_protocol(str(name))
    except ProtocolError as exc:
        raise SuiteError(f"{path}: protocol = {name!r}: {exc}") from exc


def _claims(path: Path, data: dict, runs: list[RunSpec]) -> list:
    from panorooms3d.bench.stats import parse_claims

    try:
        return parse_claims(data.get("claim", []), [r.name for r in runs])
    except ValueError as e:
        raise SuiteError(f"{path}: {e}") from e


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


class SuiteLog:
    """Append-only JSON-lines log of the suite's steps (``done`` with seconds, ``skipped``, or ``stale``)."""

    def __init__(self, path: Path, progress: bool) -> None:
        self.path = Path(path)
        self.progress = progress

    def record(self, run: str, step: str, status: str, **extra) -> None:
        rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "run": run, "step": step, "status": status, **extra}
        with self.path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.progress:
            tqdm.write(f"[{run}] {step}: {status}" + (f" ({extra['seconds']:.1f} s)" if "seconds" in extra else ""))

    def step(self, run: str, step: str, marker: Path, fn) -> None:
        """Run ``fn()`` unless ``marker`` exists (then log ``skipped``)."""
        if Path(marker).exists():
            self.record(run, step, "skipped")
            return
        t0 = time.perf_counter()
        fn()
        if not Path(marker).exists():
            raise RuntimeError(f"step {step} of run {run} finished without writing {marker}")
        self.record(run, step, "done", seconds=round(time.perf_counter() - t0, 3))


def recorded_job_seconds(path: str | Path) -> dict[str, float]:
    """Each job's seconds in a suite's ``suite_log.jsonl`` (``"step": "job"``, ``done``), by the job's label.

    A job logged done more than once gets its longest time (a resumed job measures only its rest).

    Raises:
        SuiteError: the file cannot be read, or a line is not one of the log's JSON records.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise SuiteError(f"{path}: cannot read the suite log: {e}") from e
    seconds: dict[str, float] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row.get("step") == "job" and row.get("status") == "done":
                seconds[str(row["run"])] = max(float(row["seconds"]), seconds.get(str(row["run"]), 0.0))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise SuiteError(f"{path}, line {number}: not a suite log record ({e}): {line[:80]!r}") from e
    return seconds


def _schedule_seconds(suite: Suite, settings: dict) -> tuple[dict[str, float], Path | None]:
    """The job seconds of ``[settings] schedule_log`` (a path relative to the suite file), or none."""
    name = settings.get("schedule_log")
    if name is None:
        return {}, None
    if not isinstance(name, str) or not name:
        raise SuiteError(f"{suite.path}: schedule_log must name a suite_log.jsonl, got {name!r}")
    path = suite.path.parent / name
    if not path.is_file():
        raise SuiteError(f"{suite.path}: schedule_log = {name!r}: {path} does not exist. It names an earlier run's "
                         "suite_log.jsonl, whose job seconds order the jobs; fix the path or remove the setting.")
    return recorded_job_seconds(path), path


def room_padding(checkpoint: str | Path):
    """How the rooms shown to a checkpoint's model were padded in its training (``room_pad_to`` of its ``config``,
    a block training's or a room-level run's), or None."""
    ckpt = load_checkpoint(Path(checkpoint), "cpu")
    cfg = ckpt.get("config", {}) if isinstance(ckpt, dict) else {}
    return cfg.get("room_pad_to") if isinstance(cfg, dict) else None


def load_model(checkpoint: str | Path, model: str | None = None, class_set: str = "paper30",
               model_overrides: dict | None = None):
    """A 3D model with the weights of a run checkpoint (block training or distillation).

    The model name and constructor overrides are read from the checkpoint's ``config`` unless given.

    Raises:
        FileNotFoundError: no such file. ValueError: the checkpoint names no model and none was given.
    """
    from panorooms3d.nn.registry import build_model
    from panorooms3d.taxonomy import get_class_set

    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    ckpt = load_checkpoint(checkpoint, "cpu")
    cfg = ckpt.get("config", {}) if isinstance(ckpt, dict) else {}
    name = model or cfg.get("model")
    if not name:
        raise ValueError(f"{checkpoint} does not name its model; pass --model")
    overrides = cfg.get("model_overrides", {}) if model_overrides is None else model_overrides
    net = build_model(name, num_classes=get_class_set(class_set).num_classes, in_channels=4, **overrides)
    net.load_state_dict(ckpt["model"] if "model" in ckpt else ckpt)
    return net


@dataclass
class SuiteResult:
    """Where a suite's outputs are."""

    out: Path
    table_md: Path
    table_csv: Path
    paper_csv: Path
    markdown: str
    runs: list[str]
    claims_csv: Path | None = None  # <out>/claims.csv when the suite has claims


def suite_settings(suite: Suite) -> dict:
    """A suite's ``[settings]`` over the runner's defaults (class set paper30, seed 0, device auto, no workers)."""
    return {"class_set": "paper30", "seed": 0, "device": "auto", "workers": 0, **suite.settings}


def run_suite(suite_path: str | Path, data: str | Path, out: str | Path, *, only: list[str] | None = None,
              progress: bool = True, device: str | None = None, jobs: int | None = None) -> SuiteResult:
    """Run the runs of a suite (all, or those named in ``only``) end to end, resumably; write the tables.

    Args:
        suite_path: the suite TOML. data: dataset folder. out: suite output folder.
        only: run names to run (the table still lists every run, with what has results).
        progress: progress bars and step lines.
        device: overrides ``[settings] device``.
        jobs: overrides ``[settings] jobs``: how many trainings (and other steps) run at once, each in its own
            process with cores / jobs threads (:mod:`panorooms3d.bench.jobs`); 1 (the default) runs everything
            in this process, one step after the other.

    Raises:
        SuiteError: bad suite file, unknown run name in ``only``, or jobs < 1.
    """
    from panorooms3d.store.dataset import Dataset

    suite = load_suite(suite_path)
    names = [r.name for r in suite.runs]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SuiteError(f"{suite.path}: no run named {', '.join(unknown)}; runs: {', '.join(names)}")
    selected = [r for r in suite.runs if not only or r.name in only]
    data = Path(data)
    dataset = Dataset(data)  # fails early with a clear error when the dataset is missing
    settings = suite_settings(suite)
    _check_room_patterns(suite, selected, settings, dataset, data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if device:
        settings["device"] = device
    log = SuiteLog(out / "suite_log.jsonl", progress)
    t_start = time.perf_counter()
    # Seed-major order: every run's first seed before any run's second, so a suite cut short
    # already has a complete table with one seed per row.
    order = []
    for k in range(max(len(run_seeds(r, settings)) for r in selected)):
        order += [(r, run_seeds(r, settings)[k]) for r in selected if k < len(run_seeds(r, settings))]
    for spec, seed in order:  # before any training: a folder of other settings stops the suite at once
        _check_run_folder(suite, spec, {**settings, "seed": seed}, out, run_folder(out, spec, settings, seed))
    n_jobs = jobs if jobs is not None else settings.get("jobs", 1)
    if not isinstance(n_jobs, int) or isinstance(n_jobs, bool) or n_jobs < 1:
        raise SuiteError(f"{suite.path}: jobs must be a whole number >= 1, got {n_jobs!r}")
    if n_jobs > 1:
        _run_parallel(suite, order, settings, data, out, log, progress, n_jobs, _schedule_seconds(suite, settings))
    else:
        for spec, seed in tqdm(order, desc=f"suite {suite.name}", unit="run", disable=not progress,
                               dynamic_ncols=True):
            _run_one(suite, spec, seed, settings, data, out, log, progress)
    if suite.eval.get("panorama"):
        _panorama_oracle(suite, settings, data, out, log)
    result = write_tables(suite, out)
    if progress:
        tqdm.write(f"suite {suite.name}: {len(selected)} run(s) in {time.perf_counter() - t_start:.1f} s; "
                   f"table: {result.table_md}")
    return result


def _run_variant(spec: RunSpec, settings: dict, seed: int, out: Path) -> tuple[RunSpec, Path, dict]:
    """The run of one seed: its spec (named ``name/seed<k>`` in the log when it has several seeds), folder, settings."""
    run_dir = run_folder(out, spec, settings, seed)
    run = spec if run_dir.name == spec.name else dataclasses.replace(spec, name=f"{spec.name}/{run_dir.name}")
    return run, run_dir, {**settings, "seed": seed}


def _run_one(suite: Suite, spec: RunSpec, seed: int, settings: dict, data: Path, out: Path, log: SuiteLog,
             progress: bool) -> None:
    """Every step of one run and seed: block training, the teacher, room level, evaluation, plots."""
    run, run_dir, rs = _run_variant(spec, settings, seed, out)
    run_dir.mkdir(parents=True, exist_ok=True)
    pre = _pretrain(suite, run, rs, data, out, log, progress)
    checkpoint = pre
    if run.room_level:
        cache = None
        if run.distill:
            cache = _teacher(suite, settings, data, out / "teacher", log, progress)
            _cache_unlabelled(suite, run, settings, data, out / "teacher", log, progress)
        checkpoint = _room_level(suite, run, rs, data, pre, cache, run_dir, log, progress)
    _set_aside_stale_evaluation(suite, run, run_dir, log)
    _evaluate(suite, run, rs, data, checkpoint, run_dir, log, progress)
    if suite.eval.get("panorama"):
        _evaluate_panoramas(suite, run, rs, data, checkpoint, run_dir, log, progress)
    _plots(suite, run, rs, data, checkpoint, run_dir, log)


def _job_train(suite: Suite, spec: RunSpec, seed: int, settings: dict, data: Path, out: Path, threads: int) -> None:
    """A parallel job: one block training, with ``threads`` threads (``threads`` is not part of its folder's key)."""
    run, _, rs = _run_variant(spec, settings, seed, out)
    _pretrain(suite, run, rs, data, out, SuiteLog(out / "suite_log.jsonl", False), False, threads=threads)


def _job_teacher(suite: Suite, distilling: list[RunSpec], settings: dict, data: Path, out: Path) -> None:
    """A parallel job: the teacher, its cache and score, and its predictions of every unlabelled room set."""
    log = SuiteLog(out / "suite_log.jsonl", False)
    _teacher(suite, settings, data, out / "teacher", log, False)
    for run in distilling:
        _cache_unlabelled(suite, run, settings, data, out / "teacher", log, False)


def _job_run(suite: Suite, spec: RunSpec, seed: int, settings: dict, data: Path, out: Path) -> None:
    """A parallel job: the rest of one run and seed once its block training (and teacher) exist."""
    _run_one(suite, spec, seed, settings, data, out, SuiteLog(out / "suite_log.jsonl", False), False)


def _run_parallel(suite: Suite, order: list[tuple[RunSpec, int]], settings: dict, data: Path, out: Path,
                  log: SuiteLog, progress: bool, n_jobs: int,
                  schedule: tuple[dict[str, float], Path | None] = ({}, None)) -> None:
    """The runs of ``order`` with ``n_jobs`` steps at a time (:func:`panorooms3d.bench.jobs.run_tasks`).

    Jobs: each block training not yet finished (once, however many runs share it), the teacher and its caches
    (when a run distils), and the rest of each run and seed after its training and teacher. Their
    priority is the sequential order (seed-major), so a suite cut short has the same rows done first.
    With ``schedule`` (the job seconds of ``[settings] schedule_log`` and that file) each seed round's jobs
    are ordered longest first (:func:`panorooms3d.bench.jobs.longest_first`), still seed-major.
    Each training runs with cores / n_jobs threads, whatever ``[train] threads`` says.
    """
    from panorooms3d.bench.jobs import Task, default_threads, longest_first, run_tasks

    threads = default_threads(n_jobs)
    tasks: list[Task] = []
    keys: set[str] = set()
    distilling = [spec for spec, _ in order if spec.distill]
    distilling = [r for i, r in enumerate(distilling) if r not in distilling[:i]]

    def training(spec: RunSpec, seed: int, rank: int, after: tuple[str, ...] = ()) -> str | None:
        """The key of the job that trains ``spec``'s block training for ``seed`` (added once), None when trained."""
        folder = pretrain_folder(suite, spec, {**settings, "seed": seed}, out)
        if (folder / "model.pt").exists():
            return None
        key = f"train {folder.name}"
        if key not in keys:
            keys.add(key)
            tasks.append(Task(key, f"train ({folder.name})", _job_train,
                              (suite, spec, seed, settings, data, out, threads), after, rank))
        return key

    for spec, seed in order:
        run, _, rs = _run_variant(spec, settings, seed, out)
        rank = run_seeds(spec, settings).index(seed)  # the seed round: 0 for every run's first seed
        taught_after = ()  # a block training with a block_teacher waits for the teacher's training
        if spec.block_teacher is not None and not (pretrain_folder(suite, run, rs, out) / "model.pt").exists():
            teacher_key = training(*_block_teacher(suite, spec, settings), rank)
            taught_after = () if teacher_key is None else (teacher_key,)
        key = training(spec, seed, rank, taught_after)
        after = [] if key is None else [key]
        if spec.distill:  # always a job (seconds when finished): it also caches any new unlabelled rooms
            if "teacher" not in keys:
                keys.add("teacher")
                tasks.append(Task("teacher", "teacher", _job_teacher, (suite, distilling, settings, data, out),
                                  rank=rank))
            after.append("teacher")
        tasks.append(Task(f"run {run.name}", run.name, _job_run, (suite, spec, seed, settings, data, out),
                          tuple(after), rank))
    seconds, schedule_log = schedule
    if schedule_log is not None:
        tasks = longest_first(tasks, seconds)
    if progress:
        tqdm.write(f"suite {suite.name}: {len(tasks)} job(s), {n_jobs} at a time, {threads} thread(s) each")
        if schedule_log is not None:
            known = sum(t.label in seconds for t in tasks)
            tqdm.write(f"  each seed's jobs longest first by the seconds in {schedule_log} ({known} of {len(tasks)} "
                       "jobs measured there" + (")" if known == len(tasks) else "; the others count as 0 s)"))
    bar = tqdm(total=len(tasks), desc=f"suite {suite.name}", unit="job", disable=not progress, dynamic_ncols=True)

    def started(task) -> None:
        log.record(task.label, "job", "started")

    def finished(task, seconds: float) -> None:
        log.record(task.label, "job", "done", seconds=round(seconds, 3))
        bar.update(1)

    try:
        run_tasks(tasks, n_jobs, threads, on_start=started, on_done=finished)
    finally:
        bar.close()


def _check_room_patterns(suite: Suite, runs: list[RunSpec], settings: dict, dataset, data: Path) -> None:
    """Refuse a run whose block-training ``rooms`` patterns select nothing in ``data``, before any training
    (else the error would come when the suite reaches that run, maybe hours in)."""
    from panorooms3d.bench.data import select_rooms

    for run in runs:
        cfg = _pretrain_settings(suite, run, settings)
        if cfg.get("rooms") is not None:
            split = cfg.get("split", "train")
            try:
                select_rooms(dataset.split(split), cfg["rooms"], where=f"the {split!r} split of {data}")
            except ValueError as exc:
                raise SuiteError(f"{suite.path}: run {run.name!r}: {exc}") from None


#: Block-training settings added after runs were recorded: at these values they leave a run's key
#: (its ``pretrain/<model>-<hash>`` folder) as it was, so a recorded suite resumes instead of retraining.
_KEY_NEUTRAL = {"input_encoding": "project", "cpu_amp": "off", "ema": 0.0, "ema_ramp": 10.0, "augment": True,
                "block_teacher_weight": 1.0, "block_teacher_tau": 1.0, "dice_weight": 0.0,
                "cooldown": 0.0, "adam_beta2": 0.999}


def run_seeds(run: RunSpec, settings: dict) -> list[int]:
    """The seeds of a run: its own ``seeds``, else ``[settings] seeds``, else ``[settings] seed``."""
    if run.seeds:
        return list(run.seeds)
    return [int(v) for v in settings.get("seeds") or [settings.get("seed", 0)]]


def run_folder(out: Path, run: RunSpec, settings: dict, seed: int) -> Path:
    """``<out>/runs/<name>`` for a single-seed run, ``<out>/runs/<name>/seed<k>`` with several seeds."""
    base = Path(out) / "runs" / run.name
    return base if len(run_seeds(run, settings)) == 1 else base / f"seed{seed}"


def _pretrain_settings(suite: Suite, run: RunSpec, settings: dict) -> dict:
    cfg = {**suite.train, **run.train, "model": run.model, "model_overrides": run.model_overrides,
           "class_set": settings["class_set"], "seed": settings["seed"]}
    if run.block_teacher is not None:  # relative to the suite's out folder, so that the key does not name it
        spec, seed = _block_teacher(suite, run, settings)
        cfg["block_teacher"] = f"pretrain/{pretrain_folder(suite, spec, {**settings, 'seed': seed}, Path()).name}/model.pt"
    return cfg


def _block_teacher(suite: Suite, run: RunSpec, settings: dict) -> tuple[RunSpec, int]:
    """The run whose block training teaches ``run``'s (its ``block_teacher``), and that run's one seed."""
    spec = next(r for r in suite.runs if r.name == run.block_teacher)
    return spec, run_seeds(spec, settings)[0]


def pretrain_folder(suite: Suite, run: RunSpec, settings: dict, out: Path) -> Path:
    """``<out>/pretrain/<model>-<hash>``: a run's block training, keyed by the settings that change what it learns.

    Runs (of any suite) whose block-training settings are equal get the same name, so a training can be
    shared between runs, and between suites that train the same students (settings: ``[settings]`` with
    the run's ``seed``).
    """
    cfg = _pretrain_settings(suite, run, settings)
    key = _hash({k: v for k, v in cfg.items() if k not in ("checkpoint_every", "log_every", "val_every", "threads")
                 and not (k in _KEY_NEUTRAL and v == _KEY_NEUTRAL[k])})
    return Path(out) / "pretrain" / f"{run.model}{'' if run.skip else '-noskip'}-{key}"


def _check_run_folder(suite: Suite, run: RunSpec, settings: dict, out: Path, run_dir: Path) -> None:
    """Refuse a run folder whose results start from another block training than the suite's settings give now.

    A run's steps are skipped when their outputs exist, so a folder written before the suite's ``[train]``
    changed (e.g. the CPU track's blocks) would otherwise put the old results in the new table. The block
    training a run used is in its ``metrics.json`` (blocks only) or ``distill/config.json`` (room-level).

    Raises:
        SuiteError: the run folder started from another block training; nothing is changed or deleted.
    """
    expected = pretrain_folder(suite, run, settings, out).name
    source = run_dir / "distill" / "config.json" if run.room_level else run_dir / "metrics.json"
    try:
        record = json.loads(source.read_text())
        used = Path(record["student"] if run.room_level else record["run"]["checkpoint"]).parent.name
    except (OSError, ValueError, KeyError, TypeError):  # nothing yet (or not ours to judge): the steps decide
        return
    if used != expected:
        raise SuiteError(f"{source} starts from the block training {used}, but the suite's settings now train "
                         f"{expected} (the suite's [train] or the run's settings changed since). Its results would "
                         f"be reused as they are: move or delete {run_dir} to rerun it with the new settings, or "
                         f"use another --out.")


def _pretrain(suite: Suite, run: RunSpec, settings: dict, data: Path, out: Path, log: SuiteLog, progress: bool,
              threads: int | None = None) -> Path:
    from panorooms3d.bench.train import train

    cfg = _pretrain_settings(suite, run, settings)
    if threads is not None:  # a parallel job's share of the cores (not part of the folder's key)
        cfg["threads"] = threads
    if run.block_teacher is not None:  # the teacher's block training first (a parallel job waits for it instead)
        spec, seed = _block_teacher(suite, run, settings)
        teacher, _, ts = _run_variant(spec, settings, seed, out)
        cfg["block_teacher"] = str(_pretrain(suite, teacher, ts, data, out, log, progress, threads=threads))
    config = pretrain_config(suite, run, settings, data, out, cfg)
    folder = Path(config.out)
    marker = folder / "model.pt"
    log.step(run.name, f"train ({folder.name})", marker, lambda: train(config, progress=progress))
    return marker


def pretrain_config(suite: Suite, run: RunSpec, settings: dict, data: Path, out: Path,
                    cfg: dict | None = None) -> TrainConfig:
    """The block training of ``run`` with ``settings`` (``[settings]`` and the seed) on ``data``, in its folder
    under ``out`` (:func:`pretrain_folder`). ``cfg``: its settings when the caller has them already (a parallel
    job's threads set); by default the suite's, with a block teacher's ``model.pt`` in its folder under ``out``."""
    if cfg is None:
        cfg = _pretrain_settings(suite, run, settings)
        if cfg.get("block_teacher"):  # named relative to the suite's out folder (the folder's key)
            cfg["block_teacher"] = str(Path(out) / cfg["block_teacher"])
    folder = pretrain_folder(suite, run, settings, out)
    return TrainConfig(data=str(data), out=str(folder), device=settings["device"], workers=settings["workers"], **cfg)


#: TeacherConfig fields that do not change what the teacher learns (where it runs, how often it reports).
_TEACHER_NEUTRAL = {"data", "out", "checkpoint_every", "log_every", "workers", "device", "val_every", "val_split"}


def _check_teacher_settings(folder: Path, config: TeacherConfig) -> None:
    """Refuse to reuse (or resume) a suite's teacher that was trained with other settings.

    The teacher folder is shared by every distilling run of a suite and has no settings hash in its
    name, so a changed ``[teacher]`` section would otherwise silently keep the old teacher.

    Raises:
        SuiteError: ``<folder>/config.json`` differs in a setting that changes the teacher.
    """
    stored_file = folder / "config.json"
    if not stored_file.is_file():
        return
    stored = json.loads(stored_file.read_text())
    new = dataclasses.asdict(config)
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(TeacherConfig)}
    changed = [f"{k}: {stored.get(k, defaults.get(k))!r} -> {v!r}" for k, v in new.items()
               if k not in _TEACHER_NEUTRAL and stored.get(k, defaults.get(k)) != v]
    if changed:
        raise SuiteError(f"the teacher in {folder} was trained with other settings ({'; '.join(changed)}). "
                         "It is shared by every distilling run: move the folder away together with the runs that "
                         "distilled from it (runs/*/distill of distilling runs), or use another --out")


def _teacher(suite: Suite, settings: dict, data: Path, folder: Path, log: SuiteLog, progress: bool) -> Path:
    from panorooms3d.bench.teacher import cache_teacher_predictions, train_teacher, write_teacher_metrics

    tcfg = dict(suite.teacher)
    variant, iterations, lr = tcfg.pop("variant", "tiny"), tcfg.pop("iterations", 2000), tcfg.pop("lr", 1e-4)
    teacher_input = tcfg.pop("teacher_input", "rgb")  # the protocol's channel order for the teacher cache
    marker = folder / "teacher.pt"
    _check_teacher_settings(folder, TeacherConfig(data=str(data), out=str(folder), variant=variant,
                                                  iterations=iterations, lr=lr, class_set=settings["class_set"],
                                                  seed=settings["seed"], device=settings["device"], **tcfg))
    log.step("teacher", "train-teacher", marker, lambda: train_teacher(
        data, folder, variant=variant, iterations=iterations, lr=lr, progress=progress, class_set=settings["class_set"],
        seed=settings["seed"], device=settings["device"], **tcfg))
    cache = folder / "cache"
    done = folder / "cache.json"

    def make_cache() -> None:
        counts = cache_teacher_predictions(marker, data, cache, height=tcfg.get("height"), width=tcfg.get("width"),
                                           device=settings["device"], progress=progress, teacher_input=teacher_input)
        done.write_text(json.dumps(counts, indent=2))

    log.step("teacher", "cache", done, make_cache)
    # the teacher's own score: panorama mIoU on the eval split's panoramas (a teacher row for the table)
    log.step("teacher", "evaluate-teacher", folder / "metrics.json", lambda: write_teacher_metrics(
        marker, data, folder / "metrics.json", split=suite.eval.get("split", "test"), class_set=settings["class_set"],
        height=tcfg.get("height"), width=tcfg.get("width"), device=settings["device"], progress=progress))
    return cache


def _cache_unlabelled(suite: Suite, run: RunSpec, settings: dict, data: Path, folder: Path, log: SuiteLog,
                      progress: bool) -> None:
    """The teacher's predictions of the run's ``unlabelled_data`` rooms, into the teacher's cache (once each)."""
    from panorooms3d.bench.distill import unlabelled_folders
    from panorooms3d.bench.teacher import cache_teacher_predictions

    dcfg = {**suite.distill, **run.distill_settings}
    tcfg = suite.teacher
    for extra in unlabelled_folders(data, dcfg.get("unlabelled_data", [])):
        done = folder / f"cache-{_hash(str(extra.resolve()))}.json"

        def make_cache(extra: Path = extra, done: Path = done) -> None:
            counts = cache_teacher_predictions(folder / "teacher.pt", extra, folder / "cache",
                                               splits=(dcfg.get("split", "train"),), height=tcfg.get("height"),
                                               width=tcfg.get("width"), device=settings["device"], progress=progress,
                                               teacher_input=tcfg.get("teacher_input", "rgb"))
            write_json(done, {**counts, "data": str(extra)})

        log.step("teacher", f"cache {extra.name}", done, make_cache)


def _room_level(suite: Suite, run: RunSpec, settings: dict, data: Path, student: Path, cache: Path | None,
                run_dir: Path, log: SuiteLog, progress: bool) -> Path:
    from panorooms3d.bench.distill import distill

    dcfg = {**suite.distill, **run.distill_settings}
    iterations, tau, lr = dcfg.pop("iterations", 45000), dcfg.pop("tau", 20.0), dcfg.pop("lr", 1e-4)
    folder = run_dir / "distill"
    marker = folder / "model.pt"
    step = "distill" if run.distill else "finetune"
    log.step(run.name, step, marker, lambda: distill(
        data, student, cache, folder, iterations=iterations, tau=tau, lr=lr, finetune_only=run.finetune_only,
        progress=progress, model=run.model, model_overrides=run.model_overrides, class_set=settings["class_set"],
        seed=settings["seed"], device=settings["device"], **dcfg))
    return folder / "best.pt"


def _score_split(suite: Suite, run: RunSpec, settings: dict, data: Path, checkpoint: Path, progress: bool,
                 **options):
    """The run's model and its evaluation on the suite's eval split (``options``: more ``evaluate`` arguments)."""
    from panorooms3d.bench.evaluate import evaluate
    from panorooms3d.bench.train import resolve_device

    model = load_model(checkpoint, run.model, settings["class_set"], run.model_overrides)
    ev = suite.eval
    pad = _room_pad(suite, run, settings)
    result = evaluate(model, data, split=ev.get("split", "test"), class_set=settings["class_set"],
                      max_voxels=ev.get("max_voxels", 256 * 256 * 128), device=str(resolve_device(settings["device"])),
                      progress=progress, input_encoding=ev.get("input_encoding", "project"),
                      **({} if pad is None else {"pad_to": pad}), tta=ev.get("tta", "none"),
                      **options)
    return model, result


def _room_pad(suite: Suite, run: RunSpec, settings: dict):
    """How the run's rooms are padded in evaluation: its block training's ``room_pad_to`` (as it validated and
    finetuned), else the suite's ``[eval] pad_to``, else None (``evaluate``'s default)."""
    pad = _pretrain_settings(suite, run, settings).get("room_pad_to")
    if pad is None:
        pad = suite.eval.get("pad_to")
    if pad is None:
        return None
    return int(pad) if isinstance(pad, int) else [int(p) for p in pad]


def _write_panorama_metrics(suite: Suite, run: RunSpec, settings: dict, data: Path, checkpoint: Path,
                            predictions: dict, marker: Path) -> None:
    """Score a run's predictions on the panorama pixels and write ``panorama_metrics.json`` (atomically)."""
    from panorooms3d.bench.evaluate import evaluate_on_panoramas, write_metrics
    from panorooms3d.run.atomic import atomic_path

    pano = evaluate_on_panoramas(predictions, data, class_set=settings["class_set"],
                                 input_encoding=suite.eval.get("input_encoding", "project"))
    pano.update(split=suite.eval.get("split", "test"), run={"name": run.name, "label": run.label, "model": run.model,
                                                             "checkpoint": str(checkpoint)})
    with atomic_path(marker) as tmp:
        write_metrics(pano, tmp)


#: What a run's evaluation writes from its predictions: set aside (the metrics) or removed (the plots) when the
#: suite's test-time augmentation changes, then written again.
EVALUATION_METRICS = ("metrics.json", "panorama_metrics.json")
EVALUATION_PLOTS = ("per_class_iou.png", "confusion.png", "samples*.png")


def _set_aside_stale_evaluation(suite: Suite, run: RunSpec, run_dir: Path, log: SuiteLog) -> None:
    """A run evaluated with another ``[eval] tta`` than the suite's is evaluated again.

    Its former metrics are kept beside, as ``metrics.tta-<former>.json`` (a file written before the setting
    existed: ``tta-none``); its plots are removed and drawn again.
    """
    marker = run_dir / "metrics.json"
    if not marker.is_file():
        return
    former = (json.loads(marker.read_text()).get("eval") or {}).get("tta", "none")
    wanted = suite.eval.get("tta", "none")
    if former == wanted:
        return
    for name in EVALUATION_METRICS:
        path = run_dir / name
        if path.is_file():
            path.replace(run_dir / f"{path.stem}.tta-{former}.json")
    for pattern in EVALUATION_PLOTS:
        for path in run_dir.glob(pattern):
            path.unlink()
    log.record(run.name, "evaluate", "stale", reason=f"evaluated with tta {former!r}, the suite says {wanted!r}: "
               f"evaluated again, the former metrics kept as metrics.tta-{former}.json")


def _evaluate(suite: Suite, run: RunSpec, settings: dict, data: Path, checkpoint: Path, run_dir: Path,
              log: SuiteLog, progress: bool) -> None:
    """``metrics.json``; with ``[eval] panorama`` also ``panorama_metrics.json`` from the same predictions."""
    from panorooms3d.bench.evaluate import write_metrics
    from panorooms3d.nn.registry import count_parameters, get_spec
    from panorooms3d.run.atomic import atomic_path

    marker = run_dir / "metrics.json"
    panorama = bool(suite.eval.get("panorama"))

    def go() -> None:
        ev = suite.eval
        model, result = _score_split(suite, run, settings, data, checkpoint, progress,
                                     room_weights=ev.get("weights", "project"),
                                     round_per_room=bool(ev.get("round_per_room", False)), keep_predictions=panorama)
        result["run"] = {"name": run.name, "label": run.label, "model": run.model, "checkpoint": str(checkpoint),
                         "distill": run.distill, "finetune_only": run.finetune_only, "skip": run.skip,
                         "params": count_parameters(model), "paper_params": get_spec(run.model).paper_params}
        with atomic_path(marker) as tmp:
            write_metrics(result, tmp)
        if panorama and not (run_dir / "panorama_metrics.json").exists():
            _write_panorama_metrics(suite, run, settings, data, checkpoint, result["predictions"],
                                    run_dir / "panorama_metrics.json")

    log.step(run.name, "evaluate", marker, go)


def _evaluate_panoramas(suite: Suite, run: RunSpec, settings: dict, data: Path, checkpoint: Path, run_dir: Path,
                        log: SuiteLog, progress: bool) -> None:
    """The run's predictions on the panorama pixels, for a run evaluated before ``[eval] panorama`` was set."""
    marker = run_dir / "panorama_metrics.json"

    def go() -> None:
        _, result = _score_split(suite, run, settings, data, checkpoint, progress, keep_predictions=True)
        _write_panorama_metrics(suite, run, settings, data, checkpoint, result["predictions"], marker)

    log.step(run.name, "evaluate on panorama pixels", marker, go)


def _panorama_oracle(suite: Suite, settings: dict, data: Path, out: Path, log: SuiteLog) -> None:
    """The 3D ground truth seen from the panorama cameras: the ceiling of a 3D model on the panorama pixels."""
    from panorooms3d.bench.data import load_room
    from panorooms3d.bench.evaluate import evaluate_on_panoramas, write_metrics
    from panorooms3d.run.atomic import atomic_path
    from panorooms3d.store.dataset import Dataset

    marker = out / "panorama_oracle.json"

    def go() -> None:
        ds = Dataset(data)
        split = suite.eval.get("split", "test")
        encoding = suite.eval.get("input_encoding", "project")
        truth = {u: load_room(ds, u, settings["class_set"], encoding=encoding).y for u in ds.split(split)}
        result = evaluate_on_panoramas(truth, data, class_set=settings["class_set"], input_encoding=encoding)
        result.update(split=split, run={"name": "3D ground truth", "label": "3D ground truth seen from the panorama "
                                        "camera (the ceiling of a 3D model on these pixels)"})
        with atomic_path(marker) as tmp:
            write_metrics(result, tmp)

    log.step("ground truth", "panorama oracle", marker, go)


def _plots(suite: Suite, run: RunSpec, settings: dict, data: Path, checkpoint: Path, run_dir: Path,
           log: SuiteLog) -> None:
    from panorooms3d.bench import report
    from panorooms3d.taxonomy import get_class_set

    metrics = json.loads((run_dir / "metrics.json").read_text())
    names = get_class_set(settings["class_set"]).class_names
    log.step(run.name, "plot per-class IoU", run_dir / "per_class_iou.png", lambda: report.plot_per_class_iou(
        metrics["per_class_iou"], run_dir / "per_class_iou.png", f"{run.label}: per-class IoU (pooled)"))
    log.step(run.name, "plot confusion", run_dir / "confusion.png", lambda: report.plot_confusion(
        metrics["confusion"], names, run_dir / "confusion.png", f"{run.label}: confusion (row-normalised)"))

    def samples() -> None:
        import numpy as np

        from panorooms3d.bench.data import load_room
        from panorooms3d.bench.evaluate import predict_logits
        from panorooms3d.store.dataset import Dataset

        ds = Dataset(data)
        model = load_model(checkpoint, run.model, settings["class_set"], run.model_overrides)
        rooms = [r["uid"] for r in metrics["rooms"]][: int(suite.eval.get("samples", 1))]
        for i, uid in enumerate(rooms):
            sample = load_room(ds, uid, settings["class_set"])
            pad = _room_pad(suite, run, settings)
            pred = predict_logits(model, sample.x, max_voxels=suite.eval.get("max_voxels", 256 * 256 * 128),
                                  tta=suite.eval.get("tta", "none"), **({} if pad is None else {"pad_to": pad}))
            name = "samples.png" if i == 0 else f"samples_{i}.png"
            report.plot_sample(sample, np.asarray(pred.argmax(0).numpy()), run_dir / name, settings["class_set"],
                               f"{run.label}: {uid}")

    if int(suite.eval.get("samples", 1)) > 0:  # samples = 0: no sample plots
        log.step(run.name, "plot samples", run_dir / "samples.png", samples)


def write_tables(suite: Suite | str | Path, out: str | Path) -> SuiteResult:
    """Write ``table.md``, ``table.csv``, ``paper.csv`` (and ``claims.csv`` when the suite has claims) under ``out``.

    Reads each run's evaluations: ``<out>/runs/<name>/seed<k>/metrics.json`` (several seeds) or
    ``<out>/runs/<name>/metrics.json`` (one seed). Values are means over seeds with 95% intervals
    (:mod:`panorooms3d.bench.stats`); runs without results are rows of –.
    """
    from panorooms3d.bench import report
    from panorooms3d.nn.registry import get_spec

    if not isinstance(suite, Suite):
        suite = load_suite(suite)
    out = Path(out)
    results, records = [], {}
    for run in suite.runs:
        files = report.metrics_files(out / "runs" / run.name)
        entry = {"label": run.label, "paper": run.paper, "paper_params": run.paper.get("params")}
        if files:
            summary = report.summarise_run([json.loads(p.read_text()) for _, p in files], [s for s, _ in files])
            records[run.name] = summary.pop("records")
            entry.update(summary, paper_params=summary["paper_params"] or entry["paper_params"])
        else:
            try:
                entry["paper_params"] = get_spec(run.model).paper_params or entry["paper_params"]
            except (KeyError, FileNotFoundError, ValueError):
                pass
        results.append(entry)
    rows = report.table_rows(results)
    claims = report.claim_rows(suite.claims, records, {r.name: r.label for r in suite.runs})
    split = suite.eval.get("split", "test")
    note = (f"{suite.description}\n\nDataset: the one given to `benchmark run`; split `{split}`. Metrics in percent "
            "(mmsegmentation definitions, 30 classes with void). Runs without results are shown as –.")
    tta = suite.eval.get("tta", "none")
    if tta != "none":
        from panorooms3d.bench.evaluate import TTA

        note += (f" Each room is predicted {len(TTA[tta])} times, mirrored and turned (test-time augmentation "
                 f"`{tta}`), and the class probabilities averaged; the official eval.py predicts once.")
    md = report.markdown_table(rows, title=f"{suite.name}: results", note=note.strip(), reference=suite.reference,
                               claims=claims)
    teacher_metrics = out / "teacher" / "metrics.json"
    teacher = json.loads(teacher_metrics.read_text()) if teacher_metrics.is_file() else None
    if teacher is not None:
        md += "\n" + report.teacher_markdown(teacher) + "\n"
    oracle_file = out / "panorama_oracle.json"
    pano_md = report.panorama_markdown(
        [(run.label, [json.loads(p.read_text()) for _, p in report.metrics_files(out / "runs" / run.name,
                                                                                "panorama_metrics.json")],
          [s for s, _ in report.metrics_files(out / "runs" / run.name, "panorama_metrics.json")])
         for run in suite.runs], teacher, json.loads(oracle_file.read_text()) if oracle_file.is_file() else None)
    if pano_md:
        md += "\n" + pano_md
    curves = report.training_curves(out)
    if curves:
        # curves.json holds the points; the picture is redrawn only when they changed
        text = json.dumps([{k: r[k] for k in ("name", "kind", "points", "gain_last_20")} for r in curves], indent=1)
        if not (out / "curves.png").exists() or not (out / "curves.json").exists() \
                or (out / "curves.json").read_text() != text:
            report.plot_training_curves(curves, out / "curves.png", f"{suite.name}: validation curves")
            report.write_text(out / "curves.json", text)
        md += ("\nValidation curves (`curves.png`): a training has flattened when the last 20% of its "
               "iterations add less than 1 mIoU point.\n\n" + report.curves_markdown(curves))
    paths = (out / "table.md", out / "table.csv", out / "paper.csv")
    report.write_text(paths[0], md)
    report.write_text(paths[1], report.csv_table(rows))
    report.write_text(paths[2], report.paper_csv(rows))
    claims_csv = None
    if claims:
        claims_csv = out / "claims.csv"
        report.write_text(claims_csv, report.claims_csv(claims))
    return SuiteResult(out=out, table_md=paths[0], table_csv=paths[1], paper_csv=paths[2], markdown=md,
                       runs=[r.name for r in suite.runs], claims_csv=claims_csv)
