"""ASE calculator on a trained amptorch potential.

    from amptorch.calculator import AmpTorchCalculator
    atoms.calc = AmpTorchCalculator("runs/checkpoints/2024-...-demo")   # or a TrainedPotential / AtomsTrainer
    atoms.get_potential_energy(); atoms.get_forces(); atoms.get_stress()

Units: energy eV, forces eV/Å, stress eV/Å^3 (Voigt xx yy zz yz xz xy, ASE's sign).

Between MD or relaxation steps the calculator keeps the model on its device,
reads no file and re-validates nothing; each call builds the neighbour list
(vesin, inside ``descriptor.compute``), computes the fingerprints with their
position derivatives, and runs one forward + one backward pass. Strain
derivatives (stress) are computed only when stress is asked for.

Elements the model never saw: a BPNN has no network for them and a SingleNN
with ``element_outputs`` no output layer, so both are refused (InputError). A
plain SingleNN on GMP fingerprints predicts with a warning (once per element
set): GMP takes an element's identity from its pseudo-density table, so the
shared network can evaluate any element, but nothing constrained it there (the
feature scaler falls back to its all-element statistics and the energy
baseline to 0 eV/atom), so the accuracy is unknown.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from amptorch.data.batch import collate
from amptorch.errors import InputError
from amptorch.train.checkpoint import TrainedPotential

__all__ = ["AmpTorchCalculator", "AmpTorch", "as_potential"]


def as_potential(model, device: str | torch.device | None = None) -> TrainedPotential:
    """A TrainedPotential from a checkpoint path, a TrainedPotential or a trained AtomsTrainer."""
    if isinstance(model, TrainedPotential):
        pot = model
    elif isinstance(model, (str, Path)):
        pot = TrainedPotential.load(model, device=device or "cpu")
    elif hasattr(model, "potential") and hasattr(model, "config"):  # an AtomsTrainer
        if model.potential is None:
            raise InputError("calculator: the trainer has no model; call train() or load_pretrained(path) first")
        pot = model.potential
    else:
        raise InputError(
            f"calculator: got {type(model).__name__}; expected a checkpoint path, a TrainedPotential or an AtomsTrainer"
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
        kwargs: passed to ase's Calculator (e.g. ``label``).

    ``stress`` of a structure that is not periodic along all three axes
    raises ase's PropertyNotImplementedError (there is no volume). Stress
    costs the strain derivatives: it is computed from the first call that
    asks for it on, and with every later call (NPT asks for it every step).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters: dict = {}
    nolabel = True

    def __init__(self, model, device: str | torch.device | None = None, n_threads: int = 0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 0:
            raise InputError(f"n_threads: got {n_threads!r}; expected an integer >= 0 (0: the defaults)")
        self.potential = as_potential(model, device)
        self.potential.model.eval()
        self.n_threads = int(n_threads)
        self._np_dtype = np.float32 if self.potential.dtype == torch.float32 else np.float64
        net = self.potential.network
        # only GMP describes any element (through its density); Gaussian SF have channels per element
        self._gmp = type(self.potential.descriptor).__name__ == "GMP"
        self._strict = net["name"] == "bpnn" or bool(net["options"].get("element_outputs", False)) or not self._gmp
        self._known = set(self.potential.elements)
        self._checked: tuple[int, ...] = ()
        self._warned: set[tuple[int, ...]] = set()
        self._stress_asked = False

    # -- element checks (once per distinct set of atomic numbers) -------------
    def _check_elements(self, numbers: np.ndarray) -> None:
        uniq = tuple(np.unique(numbers).tolist())
        if uniq == self._checked:
            return
        unseen = tuple(z for z in uniq if z not in self._known)
        if unseen:
            from ase.data import chemical_symbols

            names = [chemical_symbols[z] for z in unseen]
            known = [chemical_symbols[z] for z in sorted(self._known)]
            if self._strict:
                net = self.potential.network
                if net["name"] == "bpnn":
                    why = "a BPNN model has no network for it"
                elif net["options"].get("element_outputs", False):
                    why = "a SingleNN with element_outputs has no output layer for it"
                else:
                    why = "its fingerprints have no channels for it"
                raise InputError(
                    f"numbers: element {names[0]} was not in the training data and {why}; the model knows {known}"
                )
            if unseen not in self._warned:
                self._warned.add(unseen)
                warnings.warn(
                    f"AmpTorchCalculator: element(s) {names} were not in the training data {known}; the shared "
                    "SingleNN evaluates them through their GMP densities, but the accuracy is unknown",
                    stacklevel=3,
                )
        self._checked = uniq

    # -- the ASE hook -----------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        """Energy (eV), per-atom energies (eV) and forces (eV/Å); stress (eV/Å^3) only when asked."""
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms  # a copy without a calculator: no stale labels read into the record
        periodic = bool(atoms.pbc.all())
        if "stress" in properties:
            if not periodic:
                raise PropertyNotImplementedError(
                    "stress: the structure is not periodic along all three axes; expected a periodic cell"
                )
            self._stress_asked = True
        # once stress was asked for, compute it with every call: ASE asks for forces, energy and stress
        # one after another at the same positions, and a separate stress call would redo all the work
        want_stress = periodic and self._stress_asked
        self._check_elements(atoms.numbers)
        # the kernel's OpenMP setting is process-wide in effect (torch shares the OpenMP runtime):
        # read torch's thread count first and restore it after the call
        torch_threads = torch.get_num_threads()
        try:
            rec = self.potential.descriptor.compute(
                atoms, derivatives=True, strain=want_stress, dtype=self._np_dtype, n_threads=self.n_threads
            )
            if self.n_threads > 0 and torch.get_num_threads() != self.n_threads:
                torch.set_num_threads(self.n_threads)
            with torch.no_grad():
                out = self.potential.model(collate([rec]), forces=True, stress=want_stress, create_graph=False)
        finally:
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["energies"].to("cpu", torch.float64).numpy(),
            "forces": out["forces"].to("cpu", torch.float64).numpy(),
        }
        if want_stress:
            self.results["stress"] = out["stress"][0].to("cpu", torch.float64).numpy()


class AmpTorch(AmpTorchCalculator):
    """The original's calculator name: ``AmpTorch(trainer)`` (a trained or loaded AtomsTrainer)."""

    def __init__(self, trainer, **kwargs):
        super().__init__(trainer, **kwargs)
