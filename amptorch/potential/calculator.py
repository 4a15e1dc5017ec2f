"""ASE calculator on a trained amptorch potential.

    from amptorch.calculator import AmpTorchCalculator   # = amptorch.potential.AmpTorchCalculator
    atoms.calc = AmpTorchCalculator("runs/checkpoints/2024-...-demo")   # or a TrainedPotential / AtomsTrainer
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Units: energy eV, forces eV/Å, stress eV/Å^3 (Voigt xx yy zz yz xz xy, ASE's sign).

Between MD or relaxation steps the calculator keeps the model on its device,
reads no file and re-validates nothing. Two paths:

* A descriptor whose registry entry has a fused path (GMP on solid
  harmonics, the default fingerprint: ``descriptors/gmp_inference.py``). The
  kernel computes the features from a half neighbour list (vesin, kept
  between calls with a Verlet ``skin``), the network gives dE/dfeatures by one
  backward pass, and a second kernel pass turns them into forces and the virial. No (pairs, F, 3) derivative array is
  made; stress costs nothing extra and comes with every call on a periodic cell.
* Any other descriptor (Gaussian SF, GMP without solid harmonics): the
  training path. ``descriptor.compute`` builds the full neighbour list with
  vesin and the derivative blocks, and the model's autograd path gives forces;
  strain derivatives (stress) are computed from the first call that asks for
  stress on.

Elements the model never saw follow the potential's element policy
(``TrainedPotential.check_elements``): refused where the model cannot describe
them, a warning (once per element set) where a shared SingleNN evaluates them
through GMP densities. The calculator checks once per distinct element set.

This module imports no trainer and no skorch: a deployed model needs neither.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from amptorch.data.batch import collate
from amptorch.descriptors.record import voigt
from amptorch.descriptors.registry import entry_of
from amptorch.errors import InputError
from amptorch.potential.trained import TrainedPotential

__all__ = ["AmpTorchCalculator", "AmpTorch", "as_potential"]


def as_potential(model, device: str | torch.device | None = None) -> TrainedPotential:
    """A TrainedPotential from a checkpoint path, a TrainedPotential or a trained AtomsTrainer."""
    if isinstance(model, TrainedPotential):
        pot = model
    elif isinstance(model, (str, Path)):
        pot = TrainedPotential.load(model, device=device or "cpu")
    elif hasattr(model, "potential") and hasattr(model, "config"):  # an AtomsTrainer
        if model.potential is None:
            raise InputError("the trainer has no model; call train() or load_pretrained(path) first", "calculator")
        pot = model.potential
    else:
        raise InputError(
            f"got {type(model).__name__}; expected a checkpoint path, a TrainedPotential or an AtomsTrainer",
            "calculator",
        )
    if device is not None and torch.device(device) != pot.device:
        pot.model.to(device)
    return pot


class AmpTorchCalculator(Calculator):
    """ASE calculator: energy, free_energy, energies (per atom), forces and stress (periodic cells).

    Args:
        model: a checkpoint directory (or its model.pt / meta.json), a
            TrainedPotential or a trained AtomsTrainer.
        device: move the model there once (default: where it is; checkpoints load on CPU).
        n_threads: threads of the fingerprint kernel (OpenMP) and of torch during each call
            (0: leave both at their defaults). ``n_threads=1`` is fastest for small cells
            and on a busy machine; torch's global thread count is restored after each call.
        skin: Verlet skin (Å) of the fused path's neighbour list: the list holds pairs
            within cutoff + skin and is rebuilt only when an atom has moved more than
            skin / 2 or the cell, pbc or number of atoms changed; 0 rebuilds every call.
            Results do not depend on it (up to round-off).
        fused: use the fused path where the descriptor has one; False takes the
            training path (slower; for cross-checks).
        uncertainty: "ensemble", "dropout" or "latent" (None: none): ``results`` then also hold
            ``energy_uncertainty`` (float, eV) and ``forces_uncertainty`` ((n,) eV/Å, per component),
            calibrated where the checkpoint is calibrated for the method (``results["calibrated"]``),
            raw σ otherwise. With "ensemble" energy, forces and stress are the member means (all
            members in one batched network pass, one force pass per member); "dropout" adds one
            network pass over T copies and T force passes; "latent" a k-nearest-neighbour query.
            The methods come from ``potential.uq`` (docs/uncertainty.md); a method the checkpoint
            cannot give is an InputError here, before any structure.
        kwargs: passed to ase's Calculator (e.g. ``label``).

    ``stress`` of a structure that is not periodic along all three axes
    raises ase's PropertyNotImplementedError (there is no volume). On the
    fused path stress comes with every call on a periodic cell; on the
    training path it costs the strain derivatives and is computed from the
    first call that asks for it on (NPT asks for it every step).

    Attributes:
        model: the AtomisticModel it evaluates, ``potential.predictor``: the checkpoint's network, or the
            members' mean of an ensemble checkpoint (so energy, forces and stress are the mean's with or
            without ``uncertainty``).
        inference: the fused-path kernel (from the descriptor's registry entry,
            e.g. GMPInference), or None where the descriptor has no fused path.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters: dict = {}
    nolabel = True

    def __init__(
        self,
        model,
        device: str | torch.device | None = None,
        n_threads: int = 0,
        skin: float = 0.5,
        fused: bool = True,
        uncertainty: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 0:
            raise InputError(f"n_threads: got {n_threads!r}; expected an integer >= 0 (0: the defaults)")
        self.potential = as_potential(model, device)
        self.potential.model.eval()
        self.n_threads = int(n_threads)
        fused_path = entry_of(self.potential.descriptor).fused if fused else None
        self.inference = fused_path(self.potential.descriptor, skin) if fused_path is not None else None
        self._numbers: tuple[np.ndarray, torch.Tensor] | None = None  # (Z, Z on the model's device)
        self._checked: tuple[int, ...] = ()  # the element set last checked
        self._stress_asked = False
        self._uq_calibration = None  # the method's calibration (amptorch.uq.Calibration), if the checkpoint has one
        self.uncertainty = None if uncertainty is None else self._uq_method(uncertainty)
        if self.uncertainty is not None:  # calc.get_property("energy_uncertainty", atoms) works too
            self.implemented_properties = [*type(self).implemented_properties, "energy_uncertainty",
                                           "forces_uncertainty"]  # fmt: skip

    @property
    def model(self):
        """``potential.predictor``, read at each call (it follows the potential's device and ensemble)."""
        return self.potential.predictor.eval()

    # -- the ASE hook -----------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Energy (eV), per-atom energies (eV) and forces (eV/Å); stress (eV/Å^3) on periodic cells."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms  # a copy without a calculator: no stale labels read into the record
        periodic = bool(atoms.pbc.all())
        if "stress" in properties:
            if not periodic:
                raise PropertyNotImplementedError(
                    "stress: the structure is not periodic along all three axes; expected a periodic cell"
                )
            self._stress_asked = True
        uniq = tuple(np.unique(atoms.numbers).tolist())
        if uniq != self._checked:
            self.potential.check_elements(atoms.numbers)
            self._checked = uniq
        with self._threads():
            sigma = None
            if self.uncertainty is not None:
                energies, forces, stress, sigma = self._with_uncertainty(atoms, periodic)
            elif self.inference is not None:
                energies, forces, stress = self._fused(atoms, periodic)
            else:
                # once stress was asked for, compute it with every call: ASE asks for forces, energy and
                # stress one after another at the same positions, and a separate call would redo all the work
                energies, forces, stress = self._recorded(atoms, periodic and self._stress_asked)
        self.results = {
            "energy": float(energies.sum()),
            "free_energy": float(energies.sum()),
            "energies": energies,
            "forces": forces,
        }
        if stress is not None:
            self.results["stress"] = stress
        if sigma is not None:
            self.results.update(sigma)

    @contextmanager
    def _threads(self):
        """Run torch on ``n_threads`` threads, restoring its global count afterwards."""
        # torch's thread count is process-wide: set it for the call and put it back (the kernels take
        # theirs per call through an OpenMP num_threads clause and change nothing global)
        torch_threads = torch.get_num_threads()
        try:
            if self.n_threads > 0 and torch_threads != self.n_threads:
                torch.set_num_threads(self.n_threads)
            yield
        finally:
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)

    def _fused(
        self, atoms, periodic: bool, keep: dict | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """GMP features -> energies -> dE/dfeatures -> forces and virial (see the module docstring).

        ``keep``: when given, receives the features ``x`` (n, F) tensor, ``numbers`` and ``latent`` (n, H)
        (what the uncertainty methods reuse)."""
        x = self._fused_features(atoms).requires_grad_(True)
        with torch.enable_grad():
            energies, h = self.model.atomic_energies(x, self._numbers[1])  # (n,) eV, (n, H)
            (dEdG,) = torch.autograd.grad(energies.sum(), x)  # (n, F)
        if keep is not None:
            keep.update(x=x.detach(), numbers=self._numbers[1], latent=h.detach())
        forces, stress = self._fused_forces(dEdG, atoms, periodic)
        return energies.detach().to("cpu", torch.float64).numpy(), forces, stress

    def _fused_features(self, atoms) -> torch.Tensor:
        """(n, F) features of the fused kernel on the model's device and dtype (``self._numbers`` kept current)."""
        pot = self.potential
        feats = self.inference.features(atoms, self.n_threads)  # (n, F) float64
        if self._numbers is None or not np.array_equal(self._numbers[0], atoms.numbers):
            self._numbers = (atoms.numbers.copy(), torch.as_tensor(atoms.numbers, dtype=torch.long, device=pot.device))
        return torch.from_numpy(feats).to(device=pot.device, dtype=pot.dtype)

    def _fused_forces(self, dEdG: torch.Tensor, atoms, periodic: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Forces (n, 3) eV/Å and Voigt stress (eV/Å^3, None off a periodic cell) from dE/dfeatures (n, F)."""
        forces, virial = self.inference.forces(dEdG.to("cpu", torch.float64).numpy(), self.n_threads)
        stress = None
        if periodic:
            s = virial / atoms.get_volume()
            s = 0.5 * (s + s.T)
            stress = voigt(s)
        return forces, stress

    # -- uncertainty ----------------------------------------------------------------
    def _uq_method(self, name: str):
        """The potential's method object for ``name`` (InputError when the checkpoint cannot give it)."""
        state = self.potential.uq  # amptorch.uq, read lazily: a calculator without uncertainty never imports it
        method = state.method(name)
        self._uq_calibration = state.calibrations.get(method.name)
        return method

    def _with_uncertainty(self, atoms, periodic: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """Energies, forces, stress and the σ results of one structure (the method's own batched pass)."""
        from amptorch.uq.base import sample_stats

        method, pot = self.uncertainty, self.potential
        want_stress = periodic and (self.inference is not None or self._stress_asked)
        if method.name == "latent":
            keep: dict = {}
            if self.inference is not None:
                energies, forces, stress = self._fused(atoms, periodic, keep)
            else:
                rec = self._record(atoms, want_stress)
                energies, forces, stress, keep = self._recorded_latent(rec, want_stress)
            lat = keep["latent"]
            if method.layer % len(pot.model.network.hidden_layers) != len(pot.model.network.hidden_layers) - 1:
                from amptorch.uq.latent import hidden_activations

                with torch.no_grad():
                    lat = hidden_activations(pot.model, keep["x"], keep["numbers"], method.layer)
            atom_d = method.distances(lat, keep["numbers"])
            e_std = float(method.aggregate_structures(atom_d, np.zeros(len(atom_d), dtype=np.int64), 1)[0])
            return energies, forces, stress, self._sigma_results(e_std, atom_d, len(atom_d))
        if self.inference is not None:
            if method.replaces_prediction:  # the members' pass is the prediction: features only
                keep = {"x": self._fused_features(atoms), "numbers": self._numbers[1]}
            else:
                keep = {}
                energies, forces, stress = self._fused(atoms, periodic, keep)
            e_s, dEdG = method.sample_pass(pot.model, keep["x"], keep["numbers"], grad=True)  # (S, n), (S, n, F)
            per = [self._fused_forces(g, atoms, periodic) for g in dEdG]
            f_s = np.stack([f for f, _ in per])  # (S, n, 3)
            s_s = np.stack([s for _, s in per]) if periodic else None
            e_s = e_s.to("cpu", torch.float64).numpy()
        else:
            rec = self._record(atoms, want_stress)
            res = method.evaluate(pot, [rec], forces=True, stress=want_stress)
            e_s, f_s = res["energies"], res["forces"]
            s_s = res["stress"][:, 0] if want_stress else None
            if not method.replaces_prediction:
                energies, forces, stress = self._recorded(atoms, want_stress, rec)
        stats = sample_stats(e_s.sum(axis=1, keepdims=True), f_s)
        if method.replaces_prediction:  # the ensemble's prediction is its members' mean
            energies, forces = e_s.mean(axis=0), stats["forces"]
            stress = None if s_s is None else s_s.mean(axis=0)
        return energies, forces, stress, self._sigma_results(float(stats["energy_std"][0]), stats["forces_std"],
                                                             len(forces))  # fmt: skip

    def _sigma_results(self, energy_std: float, forces_std: np.ndarray, n: int) -> dict:
        """``energy_uncertainty`` (eV) and ``forces_uncertainty`` ((n,) eV/Å), calibrated where possible."""
        pred = {"energy_std": np.array([energy_std]), "forces_std": [np.asarray(forces_std, dtype=np.float64)],
                "n_atoms": np.array([n])}  # fmt: skip
        if self._uq_calibration is not None:
            pred = self._uq_calibration.apply(pred)
            e, f = pred["energy_uncertainty"], pred["forces_uncertainty"]
        else:
            e, f = pred["energy_std"], pred["forces_std"]
        return {"energy_uncertainty": float(e[0]), "forces_uncertainty": f[0],
                "calibrated": self._uq_calibration is not None}  # fmt: skip

    def _record(self, atoms, want_stress: bool):
        """The structure's FeatureRecord with derivative blocks (and strain blocks when ``want_stress``)."""
        return self.potential.descriptor.compute(
            atoms, derivatives=True, strain=want_stress, dtype=self.potential.np_dtype, n_threads=self.n_threads
        )

    def _recorded_latent(self, rec, want_stress: bool):
        """The training path with the latent kept: energies, forces, stress and {x, numbers, latent}."""
        with torch.no_grad():
            out = self.model(collate([rec]), forces=True, stress=want_stress, latent=True,
                                       create_graph=False)  # fmt: skip
        pot = self.potential
        keep = {"x": torch.as_tensor(rec.features, device=pot.device, dtype=pot.dtype),
                "numbers": torch.as_tensor(rec.numbers, device=pot.device, dtype=torch.long), "latent": out["latent"]}
        stress = out["stress"][0].to("cpu", torch.float64).numpy() if want_stress else None
        return (out["energies"].to("cpu", torch.float64).numpy(), out["forces"].to("cpu", torch.float64).numpy(),
                stress, keep)  # fmt: skip

    def _recorded(self, atoms, want_stress: bool, rec=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The training path: a FeatureRecord with derivative blocks through the model's autograd path."""
        if rec is None:
            rec = self._record(atoms, want_stress)
        with torch.no_grad():
            out = self.model(collate([rec]), forces=True, stress=want_stress, create_graph=False)
        stress = out["stress"][0].to("cpu", torch.float64).numpy() if want_stress else None
        return (
            out["energies"].to("cpu", torch.float64).numpy(),
            out["forces"].to("cpu", torch.float64).numpy(),
            stress,
        )


class AmpTorch(AmpTorchCalculator):
    """The original's calculator name: ``AmpTorch(trainer)`` (a trained or loaded AtomsTrainer)."""

    def __init__(self, trainer, **kwargs):
        super().__init__(trainer, **kwargs)
