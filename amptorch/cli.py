"""The ``amptorch`` command: train, featurize, predict, md, info, demo.

Bad input (a misspelt config key, a missing file, an element the model never
saw) prints one line ``error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from amptorch.descriptors.base import stored_labels
from amptorch.errors import InputError

__all__ = ["main", "parse_overrides", "load_yaml", "build_parser"]

DESCRIPTION = """\
Train fingerprint-based neural-network potentials and use them (AmpTorch re-implemented).

examples:
  amptorch train config.yaml optim.lr=1e-3 dataset.raw_data=data.extxyz
  amptorch featurize data.extxyz --out fps.lmdb --params params.yaml --workers 4
  amptorch predict runs/checkpoints/<run> test.extxyz --out results.extxyz
  amptorch md runs/checkpoints/<run> start.xyz --ensemble nvt --temperature 300 --steps 1000
  amptorch info runs/checkpoints/<run>
  amptorch demo --epochs 50

Bad input (a misspelt config key, a missing file, an element the model never
saw) prints one line "error: ..." and exits with status 2.
Units: energy eV, forces eV/Å, stress eV/Å^3, time fs, temperature K.
"""


# ---------------------------------------------------------------- YAML helpers
def _yaml_loader():
    """yaml.SafeLoader that also reads 1e-3 as a float (YAML 1.2; PyYAML's 1.1 reads a string) and
    refuses a key given twice in one mapping (naming the key and both lines)."""
    import yaml

    class DuplicateKey(yaml.YAMLError):
        pass

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            # a key given twice is an error (PyYAML keeps the last one silently)
            seen: dict = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKey(
                        f"key {key!r} is given twice (lines {seen[key]} and {line}); expected each key once"
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(
            r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
            |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
            re.X,
        ),
        list("-+0123456789."),
    )
    return Loader


def _yaml_value(text: str, what: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader: builds plain data only
    except yaml.YAMLError as err:
        if type(err).__name__ == "DuplicateKey":  # _yaml_loader's: already one line naming the key and lines
            raise InputError(f"{what}: {err}") from None
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{what}: not valid YAML ({first})") from None


def load_yaml(path: str | Path, what: str = "config") -> dict:
    """A YAML file holding a mapping, as a dict."""
    p = Path(path)
    if not p.exists() or p.is_dir():
        raise InputError(f"{what}: no such file {str(p)!r}; expected a YAML file")
    data = _yaml_value(p.read_text(), f"{what} {p}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{what} {p}: holds a {type(data).__name__}; expected a mapping of keys")
    return data


def parse_overrides(config: dict, overrides: Sequence[str]) -> dict:
    """Apply ``section.key=value`` overrides (value read as YAML) to a copy of ``config``."""
    import copy

    cfg = copy.deepcopy(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise InputError(f"override {item!r}: expected section.key=value, e.g. optim.lr=1e-3")
        parts = key.split(".")
        node = cfg
        for depth, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                where = ".".join(parts[: depth + 1])
                raise InputError(f"override {item!r}: {where} is a {type(nxt).__name__}; expected a mapping")
            node = nxt
        node[parts[-1]] = _yaml_value(text, f"override {key}")
    return cfg


# -------------------------------------------------------------------- helpers
def _read_data(data) -> list:
    """Structures from files/globs; errors name the command-line argument ``data``."""
    from amptorch.data import read_structures

    return read_structures(list(data), field="data")


def write_structures(path: str | Path, images: list, format: str | None = None) -> None:
    """``ase.io.write`` (``format``: None guesses it from the name); extxyz per-atom columns in full
    float64 precision (ASE's default is 8 decimals)."""
    import ase.io

    try:
        import ase.io.extxyz as extxyz

        original = extxyz.output_column_format
    except (ImportError, AttributeError):  # another ase layout: its default precision
        ase.io.write(path, images, format=format)
        return

    def full_precision(*args, **kwargs):
        comment, ncols, dtype, fmt = original(*args, **kwargs)
        return comment, ncols, dtype, fmt.replace("%16.8f", "%24.16e")

    extxyz.output_column_format = full_precision
    try:
        ase.io.write(path, images, format=format)
    finally:
        extxyz.output_column_format = original


def _at_least(command: str, **values: tuple[int | None, int]) -> None:
    """InputError unless every ``--name`` value (None: unset) is at least its minimum."""
    for name, (value, minimum) in values.items():
        if value is not None and value < minimum:
            raise InputError(f"{command} --{name.replace('_', '-')}: got {value}; expected >= {minimum}")


def _fmt(x: float | None, scale: float = 1.0, digits: int = 4) -> str:
    return "-" if x is None else f"{scale * x:.{digits}f}"


@contextlib.contextmanager
def _removed_on_failure(run_dir: Path):
    """On failure, remove the run folders (``run_dir/checkpoints/*``) made meanwhile that hold no weights
    (``model.pt``), and ``run_dir`` / ``run_dir/checkpoints`` when this call created them and they are empty."""
    root = run_dir / "checkpoints"
    made = [p for p in (run_dir, root) if not p.exists()]
    before = set(root.iterdir()) if root.is_dir() else set()
    try:
        yield
    except BaseException:
        after = set(root.iterdir()) if root.is_dir() else set()
        for folder in sorted(after - before):
            if folder.is_dir() and not (folder / "model.pt").exists():
                shutil.rmtree(folder, ignore_errors=True)
        for p in reversed(made):
            with contextlib.suppress(OSError):
                p.rmdir()  # only when empty
        raise


# ------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    from amptorch.train import AtomsTrainer, validate_config

    cfg = parse_overrides(load_yaml(args.config), args.overrides)
    if args.quiet:
        cmd = cfg.setdefault("cmd", {})
        if isinstance(cmd, dict):
            cmd["verbose"] = False
    config = validate_config(cfg)  # every key checked before any work
    if config.dataset.raw_data is None and not config.dataset.lmdb_path:
        raise InputError("config dataset.raw_data: missing; expected a file path or glob (or dataset.lmdb_path)")
    t0 = time.perf_counter()
    try:
        with _removed_on_failure(Path(config.cmd.run_dir)):
            trainer = AtomsTrainer(config).train(resume=args.resume)
    except OSError as err:  # a full disk, a read-only run_dir, ...: one line naming the file
        where = f" {err.filename}" if err.filename else f" under {config.cmd.run_dir}"
        raise InputError(
            f"train: cannot write{where} ({err.strerror or err}); expected free disk space and a writable "
            "cmd.run_dir (a run that saved no weights is removed)"
        ) from None
    from amptorch.train import distributed

    if not distributed.is_main():  # under torchrun: one summary, rank 0's
        return 0
    print(f"trained in {time.perf_counter() - t0:.1f} s; checkpoint: {trainer.run_dir}")
    for split in ("train", "valid"):
        m = trainer.metrics.get(split)
        if m:
            print(
                f"  {split}: {m['n_structures']} structures, energy MAE {_fmt(m['energy_mae'], 1000, 2)} "
                f"meV/atom, force MAE {_fmt(m.get('forces_mae'))} eV/Å"
            )
    return 0


def _featurize_descriptor(args: argparse.Namespace, images: list | None):
    """The descriptor of ``--scheme`` / ``--params`` / ``--elements`` (the data's elements when needed and
    not given: ``images`` are read for them when None)."""
    from amptorch.train.plan import Plan

    params = load_yaml(args.params, "params") if args.params else None
    section: dict = {"fp_scheme": args.scheme}
    if params is not None and any(k in params for k in ("fp_params", "cutoff_params", "elements")):
        unknown = sorted(set(params) - {"fp_params", "cutoff_params", "elements"})
        if unknown:
            raise InputError(
                f"params {args.params}: unknown key {unknown[0]!r}; expected fp_params, "
                "cutoff_params, elements (or the fp_params mapping itself)"
            )
        section.update(params)
    elif params is not None:
        section["fp_params"] = params
    if args.elements:
        section["elements"] = args.elements
    plan = Plan.from_config({"dataset": section})
    if plan.auto:  # no --params: the scheme's defaults scaled to the data's nearest-neighbour distance
        plan.resolve_fp_params(_first_frames(args.data) if images is None else images)
        print(f"fp_params 'auto' (nearest-neighbour distance {plan.config.dataset.nn_distance:g} Å): "
              f"{json.dumps(plan.config.dataset.fp_params)}")  # fmt: skip
    elements = plan.config.dataset.elements
    if elements is None and plan.descriptor_entry.needs_elements:
        images = _read_data(args.data) if images is None else images
        elements = sorted({s for a in images for s in a.get_chemical_symbols()})
    return plan.descriptor(elements or [])


def _first_frames(paths: list[str], count: int = 256) -> list:
    """Up to ``count`` structures from the start of the first file (what ``fp_params 'auto'`` measures when
    each shard task reads its own frames)."""
    from ase.io import read

    try:
        return read(paths[0], index=f":{count}")
    except Exception as err:  # noqa: BLE001 - ase raises many kinds for an unreadable file
        first = str(err).splitlines()[0] if str(err) else ""
        raise InputError(f"{paths[0]}: unreadable ({type(err).__name__}: {first})", "featurize data") from None


def cmd_featurize(args: argparse.Namespace) -> int:
    from amptorch.data import write_lmdb
    from amptorch.data.lmdb import check_lmdb_file

    _at_least("featurize", workers=(args.workers, 1), batch_size=(args.batch_size, 1),
              shard_size=(args.shard_size, 1))  # fmt: skip
    if args.geometry and (args.params or args.elements or args.no_derivatives or args.float32):
        raise InputError("featurize --geometry: stores geometry and labels only; expected no --params, --elements, "
                         "--no-derivatives or --float32")  # fmt: skip
    if args.shard_size is not None or args.scheduler is not None:
        return _featurize_sharded(args)
    out = Path(args.out)
    if out.is_dir() or (out.is_file() and out.stat().st_size > 0):  # a folder or a foreign file: before any work
        check_lmdb_file(out)
    images = _read_data(args.data)
    derivatives = not args.no_derivatives
    if args.geometry:
        meta = write_lmdb(args.out, images, kind="geometry", batch_size=args.batch_size, progress=not args.quiet,
                          with_labels=not args.no_labels, forces=not args.no_labels, stress=args.stress,
                          overwrite=args.overwrite)  # fmt: skip
        print(f"wrote {meta['count']} of {meta['total']} structures to {args.out} (geometry store)")
        return 0
    descriptor = _featurize_descriptor(args, images)
    meta = write_lmdb(
        args.out,
        images,
        descriptor,
        batch_size=args.batch_size,
        workers=args.workers,
        progress=not args.quiet,
        derivatives=derivatives or args.stress,
        strain=args.stress,
        dtype=np.float32 if args.float32 else np.float64,
        with_labels=not args.no_labels,
        forces=derivatives,
        stress=args.stress,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {meta['count']} of {meta['total']} structures to {args.out} ({type(descriptor).__name__}, "
        f"{meta['n_features']} features, descriptor hash {meta['descriptor_hash'][:12]})"
    )
    return 0


def _featurize_sharded(args: argparse.Namespace) -> int:
    """``featurize --shard-size`` / ``--scheduler``: a sharded store folder (local processes or a Dask cluster)."""
    from amptorch.data.shards import DEFAULT_SHARD_SIZE, build_store

    one_file = len(args.data) == 1 and Path(args.data[0]).is_file()
    # one file: each task reads its own frames; several files or globs are read here and sent in slices
    source = args.data[0] if one_file else _read_data(args.data)
    descriptor = None if args.geometry else _featurize_descriptor(args, None if one_file else source)
    derivatives = not args.no_derivatives
    store = build_store(
        source, args.out, kind="geometry" if args.geometry else "features", descriptor=descriptor,
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE, scheduler=args.scheduler, workers=args.workers,
        overwrite=args.overwrite, derivatives=derivatives or args.stress, strain=args.stress,
        dtype=np.float32 if args.float32 else np.float64, with_labels=not args.no_labels,
        forces=derivatives and not args.no_labels, stress=args.stress, batch_size=args.batch_size,
        progress=not args.quiet,
    )  # fmt: skip
    what = "geometry" if args.geometry else f"{type(descriptor).__name__}, {store['n_features']} features"
    print(f"wrote {store['count']} structures in {len(store['shards'])} shards to {args.out} ({what})")
    return 0


def _output_format(path: str) -> str:
    """The ase.io format ``path``'s name asks for, checked writable, and its folder checked to exist."""
    from ase.io.formats import filetype, ioformats

    try:
        fmt = filetype(path, read=False)
    except Exception:  # ase's UnknownFileTypeError and friends
        fmt = None
    if fmt not in ioformats or not ioformats[fmt].can_write:
        raise InputError(
            f"predict --out {path}: ase cannot write {'this' if fmt is None else repr(fmt)} format; "
            "expected a structure file name such as out.extxyz or out.traj"
        )
    parent = Path(path).parent
    if not parent.is_dir():
        raise InputError(f"predict --out {path}: no such folder {str(parent)!r}; expected an existing folder")
    return fmt


def cmd_predict(args: argparse.Namespace) -> int:
    import os

    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io.formats import ioformats

    from amptorch.files import write_json
    from amptorch.potential import TrainedPotential, errors
    from amptorch.potential.metrics import Labels
    from amptorch.potential.plots import parity_plot

    _at_least("predict", workers=(args.workers, 1), batch_size=(args.batch_size, 1))
    out_format = _output_format(args.out) if args.out else None  # before any work
    pot = TrainedPotential.load(args.checkpoint)
    if args.uncertainty:  # the checkpoint can give it: checked before any work
        pot.uq.method(args.uncertainty)
    images = _read_data(args.data)
    if out_format is not None and len(images) > 1 and ioformats[out_format].single:
        raise InputError(
            f"predict --out {args.out}: the {out_format} format holds one structure and the data has "
            f"{len(images)}; expected a multi-structure format such as .extxyz or .traj"
        )
    t0 = time.perf_counter()
    if args.uncertainty:  # energy and forces from the method's pass (the member mean for an ensemble), with σ
        pred = pot.uq.predict_like(images, args.uncertainty, forces=True, stress=args.stress,
                                   batch_size=args.batch_size, workers=args.workers)  # fmt: skip
    else:
        pred = pot.predict(
            images,
            forces=True,
            stress=args.stress,
            batch_size=args.batch_size,
            progress=not args.quiet,
            workers=args.workers,
        )
    dt = time.perf_counter() - t0
    refs = [stored_labels(a) for a in images]
    out_images = []
    for k, atoms in enumerate(images):
        a = atoms.copy()
        ref = refs[k]
        if "energy" in ref:
            a.info["ref_energy"] = ref["energy"]
        if "forces" in ref:
            a.arrays["ref_forces"] = ref["forces"]
        if "stress" in ref:
            a.info["ref_stress"] = ref["stress"]
        res = {"energy": pred["energy"][k], "forces": pred["forces"][k]}
        if "energies" in pred:
            res["energies"] = pred["energies"][k]
        if args.uncertainty:  # σ per structure (eV) and per atom (eV/Å), calibrated where the checkpoint is
            a.info["energy_uncertainty"] = pred["energy_uncertainty"][k]
            a.arrays["forces_uncertainty"] = np.asarray(pred["forces_uncertainty"][k])
            a.info["uncertainty_method"] = args.uncertainty
            a.info["uncertainty_calibrated"] = bool(pred["calibrated"])
        if args.stress and pred["stress"][k] is not None:
            res["stress"] = pred["stress"][k]
        a.calc = SinglePointCalculator(a, **res)
        out_images.append(a)
    if args.out:  # a temporary file moved into place: never a partial output file
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        try:
            write_structures(tmp, out_images, format=out_format)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    n_atoms = sum(len(a) for a in images)
    print(
        f"predicted {len(images)} structures ({n_atoms} atoms) in {dt:.2f} s"
        + (f"; wrote {args.out}" if args.out else "")
    )
    if not args.out:  # the predictions are the output
        for k, e in enumerate(pred["energy"]):
            sigma = f" ± {pred['energy_uncertainty'][k]:.6f} eV (σ)" if args.uncertainty else ""
            print(f"  {k}: energy {e:.6f} eV{sigma} ({e / len(images[k]):.6f} eV/atom)")
    if refs and all("energy" in r for r in refs):
        has_f = all("forces" in r for r in refs)
        ref_objs = [Labels(a.numbers, r["energy"], r.get("forces") if has_f else None)
                    for a, r in zip(images, refs, strict=True)]  # fmt: skip
        shown = pred if has_f else {k: v for k, v in pred.items() if k != "forces"}
        metrics = errors(shown, ref_objs)
        if args.stress:
            ds = [p - r["stress"] for p, r in zip(pred["stress"], refs, strict=True) if p is not None and "stress" in r]
            if ds:
                metrics["stress_mae"] = float(np.abs(np.concatenate(ds)).mean())
        line = f"errors: energy MAE {_fmt(metrics['energy_mae'], 1000, 2)} meV/atom"
        if "forces_mae" in metrics:
            line += f", force MAE {_fmt(metrics['forces_mae'])} eV/Å"
        if "stress_mae" in metrics:
            line += f", stress MAE {_fmt(metrics['stress_mae'], 1, 6)} eV/Å^3"
        print(line)
        if args.out:
            stem = Path(args.out).with_suffix("")
            write_json(Path(f"{stem}_metrics.json"), metrics)
            plot = parity_plot(shown, ref_objs, Path(f"{stem}_parity.png"), title=Path(args.out).name)
            print(f"wrote {stem}_metrics.json and {plot}")
    return 0


def _labelled_records(pot, data: Sequence[str], what: str) -> list:
    """Labelled FeatureRecords (energy, forces) of structure files, featurized for ``pot``."""
    from amptorch.data import featurize

    images = _read_data(data)
    for k, atoms in enumerate(images):
        pot.check_elements(np.asarray(atoms.numbers), k)
    try:
        return featurize(images, pot.descriptor, derivatives=True, dtype=pot.np_dtype, progress=False)
    except InputError as err:
        raise err.within(what) from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from amptorch.potential import TrainedPotential
    from amptorch.uq.conformal import check_coverage

    check_coverage(args.coverage, "calibrate --coverage")
    pot = TrainedPotential.load(args.checkpoint)
    state = pot.uq
    state.method(args.method)  # the checkpoint can give it: checked before any work
    records = _labelled_records(pot, args.data, "calibrate data")
    cal = state.calibrate(records, args.method, coverage=args.coverage, mode=args.mode)
    state.save(pot.path)
    forces = "" if cal.forces is None else f", force components ×{cal.forces.scale:.4g} (n={cal.forces.n})"
    print(f"calibrated '{args.method}' ({args.mode}, coverage {args.coverage:g}) on {len(records)} structures: "
          f"σ scale energy/atom ×{cal.energy.scale:.4g}{forces}; wrote {Path(pot.path) / 'uq.json'}")  # fmt: skip
    return 0


def cmd_uq_report(args: argparse.Namespace) -> int:
    from amptorch.files import write_json
    from amptorch.potential import TrainedPotential
    from amptorch.uq.metrics import calibration_plot, error_vs_sigma_plot, format_report, uq_report

    pot = TrainedPotential.load(args.checkpoint)
    state = pot.uq
    methods = args.method or state.available()
    if not methods:
        raise InputError(f"uq-report: {args.checkpoint} has no uncertainty method (no ensemble, dropout layers or "
                         "stored latents); expected a model trained with a uq setting")  # fmt: skip
    for m in methods:
        state.method(m)
    records = _labelled_records(pot, args.data, "uq-report data")
    reports = {}
    for m in methods:
        pred = state.predict(records, m)
        reports[m] = uq_report(pred, records)
        table = format_report(reports[m], m)
        print(table if m == methods[0] else table.split("\n", 1)[1])  # one header for all methods
        if args.out:
            out = Path(args.out)
            calibration_plot(pred, records, out / f"calibration_{m}.png", title=m)
            error_vs_sigma_plot(pred, records, out / f"error_vs_sigma_{m}.png", title=m)
    if args.out:
        write_json(Path(args.out) / "uq_report.json", reports)
        print(f"wrote {Path(args.out) / 'uq_report.json'} and the calibration / error-vs-σ PNGs")
    return 0


def _uq_parsers(sub, common, fmt) -> None:
    """The ``calibrate`` and ``uq-report`` subcommands."""
    c = sub.add_parser(
        "calibrate", parents=[common], formatter_class=fmt,
        help="fit conformal intervals of an uncertainty method on held-out data",
        description="Fit, on labelled structures held out from training, the scale that turns a method's raw σ "
        "into intervals with the target coverage (energies per atom and force components separately); saved "
        "into the checkpoint (uq.json) and used by predict and the calculator afterwards.\n\nexample:\n"
        "  amptorch calibrate runs/checkpoints/RUN calib.extxyz --method ensemble --coverage 0.9",
    )  # fmt: skip
    c.add_argument("checkpoint", help="checkpoint directory")
    c.add_argument("data", nargs="+", help="labelled structure files or globs (held out from training)")
    c.add_argument("--method", required=True, help="ensemble, dropout or latent")
    c.add_argument("--coverage", type=float, default=0.9, help="target coverage of the intervals (0.9)")
    c.add_argument("--mode", default="normalized", choices=["normalized", "split"],
                   help="normalized: interval ∝ σ (default); split: one width for all")  # fmt: skip
    c.set_defaults(func=cmd_calibrate)
    u = sub.add_parser(
        "uq-report", parents=[common], formatter_class=fmt,
        help="coverage, interval width, miscalibration, Spearman, NLL of uncertainty methods",
        description="Score each uncertainty method on labelled test structures: observed coverage at 68/90/95 %, "
        "mean interval half-width, miscalibration area, Spearman(σ, |error|), Gaussian NLL (energies per atom, "
        "force components), and PNG calibration and error-vs-σ plots with --out.\n\nexample:\n"
        "  amptorch uq-report runs/checkpoints/RUN test.extxyz --method ensemble latent --out report/",
    )  # fmt: skip
    u.add_argument("checkpoint", help="checkpoint directory")
    u.add_argument("data", nargs="+", help="labelled structure files or globs")
    u.add_argument("--method", nargs="+", default=None, help="methods to score (default: all the checkpoint has)")
    u.add_argument("--out", metavar="DIR", default=None, help="folder for uq_report.json and the PNGs")
    u.set_defaults(func=cmd_uq_report)


def cmd_md(args: argparse.Namespace) -> int:
    import ase.io
    from ase import units
    from ase.io.trajectory import Trajectory
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import Stationary
    from ase.md.verlet import VelocityVerlet

    from amptorch.calculator import AmpTorchCalculator

    for name, value, ok, expected in (
        ("--steps", args.steps, args.steps >= 0, ">= 0"),
        ("--timestep", args.timestep, args.timestep > 0, "> 0 fs"),
        ("--temperature", args.temperature, args.temperature >= 0, ">= 0 K"),
        ("--friction", args.friction, args.friction >= 0, ">= 0 1/fs"),
        ("--interval", args.interval, args.interval >= 1, ">= 1"),
        ("--threads", args.threads, args.threads >= 0, ">= 0"),
    ):
        if not ok:
            raise InputError(f"md {name}: got {value}; expected {expected}")
    start = Path(args.start)
    if not start.is_file():
        raise InputError(f"start: no such file {args.start!r}; expected a structure file")
    try:
        atoms = ase.io.read(start)  # the last frame
    except Exception as err:
        raise InputError(f"start: could not read {args.start!r} ({type(err).__name__}: {err})") from None
    atoms.calc = AmpTorchCalculator(args.checkpoint, n_threads=args.threads)  # sets torch's threads per call
    rng = np.random.default_rng(args.seed)
    try:  # ase >= 3.29; MaxwellBoltzmannDistribution is deprecated there
        from ase.md.velocitydistribution import thermalize_momenta

        thermalize_momenta(atoms, args.temperature, rng=rng)
    except ImportError:
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(atoms, temperature_K=args.temperature, rng=rng)
    Stationary(atoms)
    dt = args.timestep * units.fs
    if args.ensemble == "nve":
        dyn = VelocityVerlet(atoms, timestep=dt)
    else:
        # the centre of mass is held by a FixCom constraint (ASE >= 3.28 deprecates Langevin's fixcm)
        from ase.constraints import FixCom

        atoms.set_constraint([*atoms.constraints, FixCom()])
        dyn = Langevin(
            atoms, timestep=dt, temperature_K=args.temperature, friction=args.friction / units.fs, fixcm=False, rng=rng
        )
    n = len(atoms)
    e0 = atoms.get_potential_energy() + atoms.get_kinetic_energy()  # a failing calculator stops before any file
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"md --out {args.out}: is a folder; expected a trajectory file name such as md.traj")
    frames = [0]
    if out.suffix == ".traj":
        traj = Trajectory(out, "w", atoms)

        def write_frame() -> None:
            traj.write()
            frames[0] += 1
    else:  # any other ase.io format that can append (extxyz, xyz, ...): frames with energy and forces
        traj = None
        out.unlink(missing_ok=True)

        def write_frame() -> None:
            ase.io.write(out, atoms, append=True)
            frames[0] += 1

    dyn.attach(write_frame, interval=args.interval)
    bar = None
    if not args.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=args.steps, desc=f"md ({args.ensemble}, {n} atoms)", unit="step")

    def report() -> None:
        epot, ekin = atoms.get_potential_energy(), atoms.get_kinetic_energy()
        if bar is not None:
            bar.set_postfix(T=f"{atoms.get_temperature():.0f}K", Etot=f"{(epot + ekin) / n:.4f}eV/at", refresh=False)
            bar.update(dyn.nsteps - bar.n)

    dyn.attach(report, interval=args.interval)
    t0 = time.perf_counter()
    try:
        dyn.run(args.steps)
    except BaseException as err:
        if traj is not None:
            with contextlib.suppress(OSError):
                traj.close()
            traj = None
        if frames[0] == 0:  # nothing useful written: no empty trajectory left behind
            out.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise InputError(
                f"md --out {args.out}: cannot write ({err.strerror or err}) after {frames[0]} frames; expected "
                "free disk space"
            ) from None
        raise
    finally:
        if traj is not None:
            traj.close()
        if bar is not None:
            bar.update(args.steps - bar.n)
            bar.close()
    wall = time.perf_counter() - t0
    e1 = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    print(
        f"{args.steps} steps of {args.timestep} fs ({args.ensemble}) in {wall:.1f} s "
        f"({args.steps / max(wall, 1e-9):.1f} steps/s); T = {atoms.get_temperature():.1f} K; "
        f"total-energy change {1000 * (e1 - e0) / n:+.3f} meV/atom; trajectory: {args.out}"
    )
    return 0


def _ensemble_info(path: Path) -> dict | None:
    """uq.json's ``ensemble`` entry of checkpoint directory ``path`` (None without one)."""
    file = path / "uq.json"
    if not file.is_file():
        return None
    try:
        info = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"checkpoint {path}: uq.json: not valid JSON; expected the file amptorch wrote") from None
    entry = info.get("ensemble") if isinstance(info, dict) else None
    return entry if isinstance(entry, dict) else None


def cmd_info(args: argparse.Namespace) -> int:
    from ase.data import chemical_symbols

    path = Path(args.checkpoint)
    path = path.parent if path.is_file() else path
    from amptorch.potential.checkpoint import check_meta, read_meta

    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise InputError(f"checkpoint: {path} has no meta.json; expected a run's checkpoint dir")
    meta = read_meta(path)  # one-line errors for a damaged file: not JSON, missing keys, wrong types
    check_meta(path, meta)
    metrics = meta.get("metrics")
    if metrics is None and (path / "metrics.json").is_file():
        try:
            metrics = json.loads((path / "metrics.json").read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(
                f"checkpoint {path}: metrics.json: not valid JSON; expected the file amptorch wrote"
            ) from None
    if metrics is not None and not isinstance(metrics, dict):
        raise InputError(f"checkpoint {path}: metrics: got {type(metrics).__name__}; expected a JSON object")
    if args.json:
        print(json.dumps({**meta, "metrics": metrics}, indent=2, default=str))
        return 0
    net = meta.get("network", {})
    opts = net.get("options", {})
    desc = dict(meta.get("descriptor", {}))
    kind = desc.pop("kind", "?")
    print(f"checkpoint   {path}")
    print(f"format       {meta.get('format')} (amptorch {meta.get('amptorch_version')}), dtype {meta.get('dtype')}")
    print(f"elements     {[chemical_symbols[z] for z in opts.get('elements', [])]}")
    print(
        f"network      {net.get('name')}: hidden layers {opts.get('hidden_layers')}, "
        f"activation {opts.get('activation')}" + (", element outputs" if opts.get("element_outputs") else "")
    )
    print(f"descriptor   {kind}, {meta.get('n_features')} features, hash {str(meta.get('descriptor_hash'))[:12]}")
    ensemble = _ensemble_info(path)
    if ensemble:  # a checkpoint written before the mean was the prediction holds member 0's metrics
        scored = "and the metrics below are their mean" if not metrics or "member0" in metrics else (
            "are their mean; the metrics below are member 0's (trained before amptorch scored the mean)")
        print(f"ensemble     {ensemble.get('members')} members (seeds {ensemble.get('seeds')}): predictions {scored}")
    width = max((len(k) for k in desc), default=0)
    for k, v in desc.items():
        text = json.dumps(v)
        print(f"  {k:<{width}}  {text if len(text) <= 90 else text[:87] + '...'}")
    if metrics:
        if "best_epoch" in metrics:
            print(f"best epoch   {metrics['best_epoch']}")
        for split in ("train", "valid"):
            m = metrics.get(split)
            numbers_ok = isinstance(m, dict) and all(
                isinstance(m.get(k), (int, float, type(None)))
                for k in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse")
            )
            if m and not numbers_ok:
                raise InputError(f"checkpoint {path}: metrics.{split}: got {m!r:.60}; expected an object of numbers")
            if m:
                print(
                    f"{split:<12} {m.get('n_structures')} structures: energy MAE "
                    f"{_fmt(m.get('energy_mae'), 1000, 2)} meV/atom (RMSE {_fmt(m.get('energy_rmse'), 1000, 2)}), "
                    f"force MAE {_fmt(m.get('forces_mae'))} eV/Å (RMSE {_fmt(m.get('forces_rmse'))})"
                )
    cfg = path / "config.json"
    if cfg.is_file():
        try:
            c = json.loads(cfg.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(
                f"checkpoint {path}: config.json: not valid JSON; expected the file amptorch wrote"
            ) from None
        if (
            not isinstance(c, dict)
            or not isinstance(c.get("optim", {}), dict)
            or not isinstance(c.get("dataset", {}), dict)
        ):
            raise InputError(f"checkpoint {path}: config.json: expected an object with optim and dataset objects")
        o = c.get("optim", {})
        print(
            f"training     epochs {o.get('epochs')}, lr {o.get('lr')}, batch {o.get('batch_size')}, "
            f"force coefficient {o.get('force_coefficient')}, data {c.get('dataset', {}).get('raw_data')}"
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from amptorch.demo import run_demo

    _at_least("demo", train=(args.train, 2), test=(args.test, 1), epochs=(args.epochs, 0))
    run_demo(args.train, args.test, args.epochs, args.run_dir, args.quiet)
    return 0


# -------------------------------------------------------------------- parser
def cmd_convert_lmdb(args: argparse.Namespace) -> int:
    from amptorch.data.lmdb_convert import convert_lmdb

    meta = convert_lmdb(args.old, args.out, progress=not args.quiet)
    if not args.quiet:
        print(f"wrote {args.out}: {meta['count']} structures, {meta['n_features']} features")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or per-epoch tables"
    )
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(prog="amptorch", description=DESCRIPTION, formatter_class=fmt, parents=[common])
    from amptorch import __version__
    from amptorch.descriptors.registry import schemes

    p.add_argument("--version", action="version", version=f"amptorch {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    t = sub.add_parser(
        "train",
        parents=[common],
        formatter_class=fmt,
        help="train a potential from a YAML config",
        description="Train from a YAML config with the Python config dict's keys (model / optim / dataset / "
        "cmd; see docs/user_guide.md).\nThe config is validated before any work. Relative paths are relative "
        "to the current directory.\n\nexample:\n  amptorch train config.yaml optim.lr=1e-3 "
        "dataset.raw_data=data.extxyz cmd.run_dir=runs\n\nA killed run resumes from its last finished epoch "
        "with the same config and overrides (optim.epochs may be raised, not with optim.energy_refinement, which "
        "the recommended recipe adds) and "
        "--resume RUN_DIR after them:\n"
        "  amptorch train config.yaml optim.epochs=200 --resume runs/checkpoints/2026-01-01-12-00-00",
    )
    t.add_argument("config", help="YAML file")
    t.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="go on with a killed run in RUN_DIR (its resume.pt) from its last finished epoch; the config must "
        "equal the run's config.json except optim.epochs, which may be raised (not with an energy refinement)",
    )
    t.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override a config key, value read as YAML (e.g. optim.epochs=50 model.hidden_layers=[32,32])",
    )
    t.set_defaults(func=cmd_train)

    f = sub.add_parser(
        "featurize",
        parents=[common],
        formatter_class=fmt,
        help="fingerprint structures into an LMDB file",
        description="Fingerprint structures (with derivatives) into an LMDB file for "
        "dataset.lmdb_path.\nRe-running after a kill resumes (only onto the same inputs and settings; "
        "--overwrite starts again).\n\nexample:\n  amptorch featurize "
        "train.extxyz --out fps.lmdb --scheme gmpordernorm --params params.yaml --workers 4",
    )
    f.add_argument("data", nargs="+", help="structure files or globs (extxyz, ASE db, ...)")
    f.add_argument("--out", required=True, metavar="FILE", help="the LMDB file to write")
    f.add_argument(
        "--scheme",
        default="gmpordernorm",
        help=f"fingerprint scheme (dataset.fp_scheme): {', '.join(schemes())}; default gmpordernorm",
    )
    f.add_argument(
        "--params",
        help="YAML: the fp_params mapping (MCSHs / Gs), or a mapping with fp_params, "
        "cutoff_params, elements; default GMP settings when omitted",
    )
    f.add_argument(
        "--elements", nargs="+", metavar="EL", help="element symbols (Gaussian rows); default: those in the data"
    )
    f.add_argument("--workers", type=int, default=None, metavar="N",
                   help="featurizing threads; with --shard-size: shard processes (default: all CPUs)")  # fmt: skip
    f.add_argument("--geometry", action="store_true",
                   help="store geometry and labels only (no fingerprints), for features: recompute")  # fmt: skip
    f.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="write a sharded store folder at --out, N structures per shard (one task each)")  # fmt: skip
    f.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler (tcp://host:8786) that builds the shards; needs amptorch[cluster]")  # fmt: skip
    f.add_argument("--batch-size", type=int, default=256, metavar="N", help="structures per LMDB transaction (256)")
    f.add_argument("--stress", action="store_true", help="also store strain derivatives and stress labels")
    f.add_argument("--no-derivatives", action="store_true", help="fingerprints only (energy-only training)")
    f.add_argument("--no-labels", action="store_true", help="do not read energy/forces labels")
    f.add_argument("--float32", action="store_true", help="store float32 fingerprints (default float64)")
    f.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing store at --out (default: resume it, only onto the same inputs and settings)",
    )
    f.set_defaults(func=cmd_featurize)

    c = sub.add_parser(
        "convert-lmdb",
        parents=[common],
        formatter_class=fmt,
        help="convert an LMDB written by the original AmpTorch into ours",
        description="Read an LMDB written by the original AmpTorch (pickled records, read with a restricted "
        "unpickler that refuses any other class) and write its records, unscaled, as an amptorch LMDB for "
        "dataset.lmdb_path.\n\nexample:\n  amptorch convert-lmdb data.lmdb --out data_amptorch.lmdb",
    )
    c.add_argument("old", help="the original's LMDB file")
    c.add_argument("--out", required=True, metavar="FILE", help="the LMDB file to write")
    c.set_defaults(func=cmd_convert_lmdb)

    r = sub.add_parser(
        "predict",
        parents=[common],
        formatter_class=fmt,
        help="predict energies, forces (and stress)",
        description="Predict structures with a trained checkpoint. With --out, write the structures with "
        "predicted\nenergy/forces(/stress) (any ase.io format by extension; reference labels kept as "
        "ref_energy,\nref_forces, ref_stress). When the inputs carry reference labels, print MAEs and write "
        "<out>_metrics.json\nand <out>_parity.png beside --out.\n\nexample:\n  amptorch predict "
        "runs/checkpoints/<run> test.extxyz --out results.extxyz",
    )
    r.add_argument("checkpoint", help="checkpoint directory (meta.json + model.pt)")
    r.add_argument("data", nargs="+", help="structure files or globs")
    r.add_argument("--out", metavar="FILE", help="output structure file, e.g. results.extxyz")
    r.add_argument("--stress", action="store_true", help="also predict stress (periodic cells)")
    r.add_argument("--batch-size", type=int, default=32, metavar="N", help="structures per model call (32)")
    r.add_argument("--workers", type=int, default=None, metavar="N", help="featurizing threads (default: all CPUs)")
    r.add_argument("--uncertainty", metavar="METHOD", default=None,
                   help="also σ: ensemble, dropout or latent (info energy_uncertainty, array forces_uncertainty)")
    r.set_defaults(func=cmd_predict)
    _uq_parsers(sub, common, fmt)

    m = sub.add_parser(
        "md",
        parents=[common],
        formatter_class=fmt,
        help="molecular dynamics with the ASE calculator",
        description="Run NVE (velocity Verlet) or NVT (Langevin) MD from a structure, with Maxwell-Boltzmann "
        "initial\nvelocities at --temperature.\n\nexample:\n  amptorch md runs/checkpoints/<run> start.xyz "
        "--ensemble nvt --temperature 300 --timestep 2 --steps 1000 --out md.traj",
    )
    m.add_argument("checkpoint", help="checkpoint directory")
    m.add_argument("start", help="start structure (the last frame of the file)")
    m.add_argument(
        "--ensemble", choices=["nvt", "nve"], default="nvt", help="nvt: Langevin, nve: velocity Verlet (default nvt)"
    )
    m.add_argument(
        "--temperature",
        type=float,
        default=300.0,
        metavar="K",
        help="initial velocities and NVT target (default 300 K)",
    )
    m.add_argument("--timestep", type=float, default=1.0, metavar="FS", help="time step (default 1 fs)")
    m.add_argument("--steps", type=int, default=100, metavar="N", help="number of steps (default 100)")
    m.add_argument(
        "--friction", type=float, default=0.01, metavar="PER_FS", help="Langevin friction (default 0.01 1/fs)"
    )
    m.add_argument(
        "--out",
        default="md.traj",
        metavar="FILE",
        help="trajectory: .traj (ASE) or any ase.io format that appends, e.g. .extxyz (default md.traj)",
    )
    m.add_argument("--interval", type=int, default=10, metavar="N", help="write and report every N steps (default 10)")
    m.add_argument("--seed", type=int, default=0, metavar="N", help="velocity / thermostat random seed (default 0)")
    m.add_argument(
        "--threads", type=int, default=0, metavar="N", help="fingerprint and torch threads (0: their defaults)"
    )
    m.set_defaults(func=cmd_md)

    i = sub.add_parser(
        "info",
        parents=[common],
        help="describe a checkpoint",
        description="Descriptor settings, elements, network, data size and errors of a checkpoint.",
    )
    i.add_argument("checkpoint", help="checkpoint directory")
    i.add_argument("--json", action="store_true", help="print meta.json and metrics as JSON")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser(
        "demo",
        parents=[common],
        help="train and test on generated EMT Cu data",
        description="The README's demo: EMT-labelled Cu cells, a SingleNN on GMP, test errors.",
    )
    d.add_argument("--train", type=int, default=200, metavar="N", help="training structures (default 200)")
    d.add_argument("--test", type=int, default=60, metavar="N", help="test structures (default 60)")
    d.add_argument("--epochs", type=int, default=150, metavar="N", help="epochs (default 150)")
    d.add_argument(
        "--run-dir", default="runs/demo", metavar="DIR", help="where the checkpoint goes (default runs/demo)"
    )
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it; status 2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if not hasattr(args, "quiet"):
        args.quiet = False
    try:
        return int(args.func(args) or 0)
    except (InputError, OSError) as err:
        if isinstance(err, BrokenPipeError):  # output piped into e.g. `head`
            sys.stderr.close()
            return 0
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
