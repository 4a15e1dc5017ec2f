"""Active learning: run MD on the model, label the frames whose calibrated σ exceeds a threshold, retrain.

One round: fit a potential on the labelled training frames; calibrate its
uncertainty method (split conformal, :mod:`amptorch.uq.conformal`) on the
labelled calibration frames; score it on a fixed test set; run MD driven by the
model through :class:`~amptorch.potential.AmpTorchCalculator` with
``uncertainty=method``, selecting every frame whose calibrated σ exceeds the
threshold (MD stops after ``max_select`` selections, or at once when σ exceeds
``stop_factor`` × the threshold: the model is then far outside its data and
the trajectory no longer means anything); label the selected frames with any
ase calculator (EMT stands in for DFT) and add them to the data.

Training is injected (``fit(images) -> TrainedPotential``) because ``uq``
sits below ``train`` in the layers: the example builds ``fit`` from an
``AtomsTrainer`` config (:func:`trainer_fit` there). Each round retrains from
scratch on all labelled frames rather than fine-tuning: the new frames lie
outside the range the first round's feature scaler and energy baseline were
fitted on (fine-tuning keeps both), a fresh fit costs seconds at these sizes,
and ensemble members trained from their own seeds stay diverse where
fine-tuned members drift together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from amptorch.errors import InputError
from amptorch.uq.base import check_method

CRITERIA = ("forces", "energy")

Fit = Callable[[list[Atoms]], object]
"""``fit(images) -> TrainedPotential``: a potential trained on the labelled ``images`` (with the method's
state: an ensemble for "ensemble", dropout layers for "dropout"; "latent" is fitted here when absent)."""
MDDriver = Callable[[object, int], Iterable[Atoms]]
"""``driver(calculator, round) -> iterable of Atoms``: MD driven by ``calculator``, yielding snapshots whose
calculator results (energy, forces, σ) are current; the loop may stop iterating at any snapshot."""


# -- the pieces -----------------------------------------------------------------------------------------
def thermalize(atoms: Atoms, temperature_K: float, rng: np.random.RandomState) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_K`` (ASE's ``thermalize_momenta`` from 3.29, its older
    name before)."""
    from ase.md import velocitydistribution as vd

    if hasattr(vd, "thermalize_momenta"):
        vd.thermalize_momenta(atoms, temperature_K, rng=rng)
    else:  # ase < 3.29
        vd.MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


def langevin_driver(
    start: Atoms | Sequence[Atoms],
    temperature_K: float | Sequence[float],
    steps: int,
    interval: int = 5,
    timestep_fs: float = 2.0,
    friction: float = 0.01,
    seed: int = 0,
) -> MDDriver:
    """A driver running Langevin MD (ASE) from ``start`` (round r: ``start[r % len]``) at ``temperature_K``
    (round r: ``temperature_K[min(r, len - 1)]``, so later rounds may run hotter), yielding the structure
    every ``interval`` steps, ``steps`` steps at most (timestep in fs, friction in 1/fs)."""
    starts = [start] if isinstance(start, Atoms) else list(start)
    temps = [float(temperature_K)] if np.isscalar(temperature_K) else [float(t) for t in temperature_K]
    if not starts or not all(isinstance(a, Atoms) for a in starts):
        raise InputError("start: expected an ase.Atoms or a non-empty list of them")
    if not temps or min(temps) <= 0:
        raise InputError(f"temperature_K: got {temperature_K!r}; expected temperatures > 0 K")
    for name, v in (("steps", steps), ("interval", interval)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name}: got {v!r}; expected an integer >= 1")

    def driver(calc, round_index: int) -> Iterator[Atoms]:
        from ase import units
        from ase.md.langevin import Langevin

        temp = temps[min(round_index, len(temps) - 1)]
        atoms = starts[round_index % len(starts)].copy()
        atoms.calc = calc
        rng = np.random.RandomState(seed + round_index)
        thermalize(atoms, temp, rng)
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temp, friction=friction / units.fs,
                       fixcm=False, rng=rng)  # fmt: skip
        for _ in range(steps // interval):
            dyn.run(interval)
            atoms.get_forces()  # the results of the current positions (the last step evaluated the previous ones)
            yield atoms

    return driver


def label(frames: Iterable[Atoms], calculator) -> list[Atoms]:
    """Copies of ``frames`` (positions, cell, pbc, info) with the energy (eV) and forces (eV/Å) of
    ``calculator`` (any ase calculator: DFT, or EMT standing in for it) frozen on a SinglePointCalculator."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for atoms in frames:
        atoms = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc, info=dict(atoms.info))
        atoms.calc = calculator
        results = {"energy": float(atoms.get_potential_energy()), "forces": np.array(atoms.get_forces())}
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


def sigma_of(results: dict, criterion: str) -> float:
    """The calibrated σ the threshold applies to: the largest atom's force σ (eV/Å) or the energy σ per atom
    (eV/atom), from an AmpTorchCalculator's ``results``."""
    if criterion == "forces":
        return float(np.max(results["forces_uncertainty"]))
    return float(results["energy_uncertainty"]) / len(results["forces_uncertainty"])


# -- the loop -----------------------------------------------------------------------------------------------
@dataclass
class Round:
    """One round: the model trained on ``n_train`` frames, its test errors, and what its MD selected."""

    index: int
    n_train: int
    n_calib: int
    energy_mae: float  # eV/atom on the test set
    forces_mae: float  # eV/Å on the test set
    snapshots: int = 0  # MD snapshots checked
    selected: int = 0  # frames above the threshold, labelled and added
    max_sigma: float = 0.0  # largest calibrated σ seen in MD (criterion's units)
    stopped: bool = False  # MD stopped early (max_select reached, σ > stop_factor x threshold, or md_error)
    md_error: str = ""  # the InputError that ended MD (e.g. atoms pushed too close by an unreliable model)
    seconds: float = 0.0


@dataclass
class ActiveLearningResult:
    """Rounds (the last one's model is ``potential``) and the labelled data it ends with."""

    rounds: list[Round]
    train: list[Atoms]
    calib: list[Atoms]
    potential: object
    selected: list[Atoms] = field(default_factory=list)  # every labelled frame, in order

    def table(self, unit: str = "eV/Å") -> str:
        """The per-round table (energy MAE in meV/atom, force MAE in eV/Å)."""
        head = (f"| round | train frames | test energy MAE (meV/atom) | test force MAE (eV/Å) | MD snapshots | "
                f"selected | max σ ({unit}) | s |")  # fmt: skip
        lines = [head, "|" + "---:|" * 8]
        for r in self.rounds:
            md = (f"{r.snapshots} | {r.selected} | {r.max_sigma:.3g}" if r.snapshots else "– | – | –")
            lines.append(f"| {r.index} | {r.n_train} | {1000 * r.energy_mae:.2f} | {r.forces_mae:.4f} | {md} | "
                         f"{r.seconds:.0f} |")  # fmt: skip
        return "\n".join(lines)


class ActiveLearner:
    """Uncertainty-driven data acquisition around a user's training function.

    Args:
        fit: ``fit(images) -> TrainedPotential`` (see :data:`Fit`).
        md_driver: ``driver(calculator, round) -> snapshots`` (:func:`langevin_driver`, or your own).
        labeler: any ase calculator giving reference energies and forces (DFT; EMT in the example).
        threshold: calibrated σ above which a snapshot is selected (eV/Å for "forces", eV/atom for "energy").
        method: "ensemble", "dropout" or "latent".
        criterion: "forces" (the largest atom's force σ) or "energy" (energy σ per atom).
        coverage: the conformal calibration's coverage (σ is the Gaussian σ of that interval).
        max_select: frames selected per round before MD stops.
        stop_factor: MD stops at once when σ exceeds ``stop_factor`` x threshold (the model is lost there).
        calib_every: every ``calib_every``-th labelled frame goes to the calibration set, the rest to training.
        test_images: labelled structures scored after each training (never trained on).
        latent: LatentDistance options used when the potential holds no training latents ("latent" only).
    """

    def __init__(self, fit: Fit, md_driver: MDDriver, labeler, threshold: float, method: str = "ensemble",
                 criterion: str = "forces", coverage: float = 0.9, max_select: int = 5, stop_factor: float = 4.0,
                 calib_every: int = 4, test_images: Sequence[Atoms] | None = None,
                 latent: dict | None = None, verbose: bool = True):  # fmt: skip
        from amptorch.uq.conformal import check_coverage

        if not callable(fit) or not callable(md_driver):
            raise InputError("fit, md_driver: expected callables (see amptorch.uq.active)")
        if not hasattr(labeler, "get_potential_energy") and not hasattr(labeler, "calculate"):
            raise InputError(f"labeler: got {type(labeler).__name__}; expected an ase calculator")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < np.inf:
            raise InputError(f"threshold: got {threshold!r}; expected a calibrated σ > 0")
        if criterion not in CRITERIA:
            raise InputError(f"criterion: got {criterion!r}; expected one of {list(CRITERIA)}")
        for name, v, lo in (("max_select", max_select, 1), ("calib_every", calib_every, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"{name}: got {v!r}; expected an integer >= {lo}")
        if not (isinstance(stop_factor, (int, float)) and stop_factor >= 1):
            raise InputError(f"stop_factor: got {stop_factor!r}; expected a number >= 1")
        self.fit, self.md_driver, self.labeler = fit, md_driver, labeler
        self.threshold, self.method, self.criterion = float(threshold), check_method(method), criterion
        self.coverage = check_coverage(coverage)
        self.max_select, self.stop_factor, self.calib_every = max_select, float(stop_factor), calib_every
        self.test_images = None if test_images is None else list(test_images)
        self.latent = dict(latent or {})
        try:  # its options checked now, not after the first training
            from amptorch.uq.latent import LatentDistance

            LatentDistance(**self.latent)
        except TypeError as err:
            raise InputError(f"latent: {err}; expected LatentDistance options (k, aggregate, index, max_atoms, "
                             "layer, seed)") from None  # fmt: skip
        self.verbose = verbose

    # -- one round's steps ------------------------------------------------------------------------------
    def split(self, images: Sequence[Atoms]) -> tuple[list[Atoms], list[Atoms]]:
        """(training, calibration) frames: every ``calib_every``-th frame (from the first) calibrates."""
        calib = [a for k, a in enumerate(images) if k % self.calib_every == 0]
        train = [a for k, a in enumerate(images) if k % self.calib_every != 0]
        return train, calib

    def train(self, train: list[Atoms], calib: list[Atoms]):
        """The potential fitted on ``train``, its method calibrated on ``calib``."""
        from amptorch.data import featurize
        from amptorch.uq.latent import LatentDistance

        pot = self.fit(list(train))
        if not hasattr(pot, "uq") or not hasattr(pot, "descriptor"):
            raise InputError(f"fit: returned {type(pot).__name__}; expected a TrainedPotential (e.g. "
                             "AtomsTrainer(config).train().potential)")  # fmt: skip
        state = pot.uq
        if self.method == "latent" and state.latent is None:
            records = featurize(train, pot.descriptor, derivatives=False, dtype=pot.np_dtype, progress=False)
            state.latent = LatentDistance(**self.latent).fit(pot, records)
        state.calibrate(calib, self.method, coverage=self.coverage)
        return pot

    def explore(self, potential, round_index: int, row: Round) -> list[Atoms]:
        """MD on ``potential`` with σ: copies of the snapshots above the threshold (``info["uq_sigma"]``: their
        calibrated σ, ``info["uq_round"]``); ``row``'s MD counters set."""
        from amptorch.potential import AmpTorchCalculator

        calc = AmpTorchCalculator(potential, uncertainty=self.method)
        picked: list[Atoms] = []
        snapshots = iter(self.md_driver(calc, round_index))
        while True:
            try:
                atoms = next(snapshots)
            except StopIteration:
                break
            except InputError as err:  # the model's MD left what the descriptor accepts: end this round's MD
                row.stopped, row.md_error = True, str(err)
                break
            row.snapshots += 1
            sigma = sigma_of(calc.results, self.criterion)
            row.max_sigma = max(row.max_sigma, sigma)
            if sigma > self.threshold:
                picked.append(atoms.copy())
                picked[-1].info.update(uq_sigma=sigma, uq_round=round_index)
                if len(picked) >= self.max_select or sigma > self.stop_factor * self.threshold:
                    row.stopped = True
                    break
        row.selected = len(picked)
        return picked

    def score(self, potential) -> tuple[float, float]:
        """(energy MAE eV/atom, force MAE eV/Å) on the test set (NaN without one)."""
        from amptorch.potential import errors

        if not self.test_images:
            return np.nan, np.nan
        err = errors(potential.predict(self.test_images), self.test_images)
        return err["energy_mae"], err.get("forces_mae", np.nan)

    # -- the loop ---------------------------------------------------------------------------------------------
    def run(self, initial_images: Sequence[Atoms], rounds: int) -> ActiveLearningResult:
        """``rounds`` rounds of train → calibrate → MD → label; the data then trains a last model, so the
        result holds ``rounds + 1`` rows (row 0: the initial data's model)."""
        from amptorch.data import read_structures

        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
            raise InputError(f"rounds: got {rounds!r}; expected an integer >= 0")
        data = list(read_structures(initial_images, "initial_images"))
        train, calib = self.split(data)
        if not train or len(calib) < 10:
            raise InputError(f"initial_images: {len(data)} frames give {len(calib)} calibration frames (every "
                             f"{self.calib_every}-th); expected at least 10 for a 90 % conformal interval")  # fmt: skip
        history: list[Round] = []
        selected: list[Atoms] = []
        for r in range(rounds + 1):
            t0 = time.perf_counter()
            pot = self.train(train, calib)
            row = Round(r, len(train), len(calib), *self.score(pot))
            if r < rounds:
                new = label(self.explore(pot, r, row), self.labeler)
                # new frames continue the data's numbering, so the calib_every split stays even
                for k, atoms in enumerate(new, len(data)):
                    (calib if k % self.calib_every == 0 else train).append(atoms)
                data += new
                selected += new
            row.seconds = time.perf_counter() - t0
            history.append(row)
            if self.verbose:
                print(f"round {r}: {row.n_train} training frames, test energy MAE {1000 * row.energy_mae:.2f} "
                      f"meV/atom, force MAE {row.forces_mae:.4f} eV/Å; MD {row.snapshots} snapshots, max σ "
                      f"{row.max_sigma:.3g}, {row.selected} selected ({row.seconds:.0f} s)"
                      + (f"; MD ended: {row.md_error}" if row.md_error else ""), flush=True)  # fmt: skip
        return ActiveLearningResult(history, train, calib, pot, selected)


def active_learning_loop(fit: Fit, initial_images: Sequence[Atoms], md_driver: MDDriver, labeler,
                         threshold: float, rounds: int, test_images: Sequence[Atoms] | None = None,
                         **options) -> ActiveLearningResult:  # fmt: skip
    """``ActiveLearner(fit, md_driver, labeler, threshold, test_images=test_images, **options).run(initial_images,
    rounds)``: the brief's one-call form."""
    return ActiveLearner(fit, md_driver, labeler, threshold, test_images=test_images, **options).run(
        initial_images, rounds)


__all__ = ["CRITERIA", "ActiveLearner", "ActiveLearningResult", "Round", "active_learning_loop",
           "langevin_driver", "label", "sigma_of"]  # fmt: skip
