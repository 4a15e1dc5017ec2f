"""Deep ensembles: M networks that share the descriptor, scaler tables and energy baseline.

The member networks' parameters are stacked along a leading member axis
(``torch.func.stack_module_state``) and evaluated with ``torch.vmap`` over
``torch.func.functional_call`` in one batched pass; the prediction is the
member mean, σ the spread over members (population standard deviation).
In a checkpoint the members live in ``ensemble.pt`` (stacked tensors,
``weights_only=True``); ``model.pt`` holds member 0. The checkpoint's prediction is the members' mean
(``TrainedPotential.predictor``, a ``models.MemberMean`` over these networks), this pass's mean included.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from amptorch.errors import InputError
from amptorch.models import build_model
from amptorch.uq.base import SamplingMethod


class Ensemble(SamplingMethod):
    """M member networks of one architecture, evaluated together.

    Args:
        networks: the members (SingleNN or BPNN of identical architecture; each trained on its own seed
            and/or bootstrap sample). The potential's own network need not be one of them.
        seeds: the members' training seeds (kept as metadata).
        bootstrap: whether the members were trained on bootstrap samples (metadata).
    """

    name = "ensemble"
    replaces_prediction = True

    def __init__(self, networks: Sequence[nn.Module], seeds: Sequence[int] | None = None, bootstrap: bool = False):
        networks = list(networks)
        if len(networks) < 2:
            raise InputError(f"ensemble: {len(networks)} member(s); expected at least 2")
        shapes = {k: v.shape for k, v in networks[0].state_dict().items()}
        for m, net in enumerate(networks[1:], 1):
            if type(net) is not type(networks[0]) or {k: v.shape for k, v in net.state_dict().items()} != shapes:
                raise InputError(f"ensemble: member {m} differs in architecture from member 0; expected one network "
                                 "architecture for all members")  # fmt: skip
        self.networks = networks
        self.seeds = None if seeds is None else [int(s) for s in seeds]
        self.bootstrap = bool(bootstrap)
        self._stacked: tuple | None = None

    @property
    def samples(self) -> int:
        return len(self.networks)

    @property
    def members(self) -> int:
        """M, the number of member networks."""
        return len(self.networks)

    def _functional(self, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, dict, dict]:
        """(stateless base module, stacked parameters (M, ...), member 0's buffers) on device/dtype.

        Buffers (the element index table) are the same for every member and stay unbatched: the
        networks branch on them (unknown-element checks), which vmap cannot do on batched tensors.
        """
        key = (device, dtype)
        if self._stacked is None or self._stacked[0] != key:
            for net in self.networks:
                net.to(device=device, dtype=dtype).eval()
            params, _ = torch.func.stack_module_state(self.networks)
            base = copy.deepcopy(self.networks[0]).to("meta")
            buffers = dict(self.networks[0].named_buffers())
            self._stacked = (key, base, params, buffers)
        return self._stacked[1:]

    def sample_energies(self, model, features: torch.Tensor, numbers: torch.Tensor) -> torch.Tensor:
        """(M, N) per-atom energies (eV) of every member from raw features (M, N, F): one vmapped pass."""
        base, params, buffers = self._functional(features.device, features.dtype)
        x = (features - model.feature_shift.index_select(0, numbers)) / model.feature_scale.index_select(0, numbers)

        def member(p: dict, xm: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(base, (p, buffers), (xm, numbers))

        out = torch.vmap(member)(params, x)  # (M, N)
        return model.energy_scale * out + model.energy_refs.index_select(0, numbers)

    # -- checkpoint state ----------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Stacked member weights: ``name`` → (M, ...) CPU tensors (persistent entries only)."""
        states = [net.state_dict() for net in self.networks]
        return {k: torch.stack([s[k].detach().cpu() for s in states]) for k in states[0]}

    def to_json(self) -> dict:
        return {"members": self.members, "seeds": self.seeds, "bootstrap": self.bootstrap}

    @classmethod
    def from_state(cls, network: dict, n_features: int, state: dict[str, torch.Tensor], info: dict,
                   dtype: torch.dtype, where: str = "ensemble.pt") -> Ensemble:  # fmt: skip
        """Rebuild the members from the potential's network spec and the stacked weights (shapes checked)."""
        members = info.get("members")
        if isinstance(members, bool) or not isinstance(members, int) or members < 2:
            raise InputError(f"{where}: uq.json ensemble.members is {members!r}; expected an integer ≥ 2")
        nets = []
        for m in range(members):
            net = build_model(network["name"], n_features, **network["options"]).to(dtype=dtype)
            want = net.state_dict()
            if set(state) != set(want):
                missing = sorted(set(want) ^ set(state))[0]
                raise InputError(f"{where}: {missing!r} does not match the checkpoint's network; expected the "
                                 "stacked weights amptorch wrote")  # fmt: skip
            for k, v in want.items():
                if tuple(state[k].shape) != (members, *v.shape):
                    raise InputError(f"{where}: {k} has shape {tuple(state[k].shape)}; expected "
                                     f"{(members, *v.shape)}")  # fmt: skip
            if m == 0 and not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
                raise InputError(f"{where}: holds NaN or inf; expected finite weights")
            net.load_state_dict({k: v[m] for k, v in state.items()})
            nets.append(net.eval())
        return cls(nets, seeds=info.get("seeds"), bootstrap=bool(info.get("bootstrap", False)))


__all__ = ["Ensemble"]
