"""Micro-benchmarks behind two design choices in amptorch.models (CPU, float64).

1. FeatureFunction (free forward, contraction only in backward) against the
   equivalent plain expression features + linear terms at zero displacement.
2. BPNN per-element loop (index_select / index_copy) against stacked weights
   with torch.bmm over element-padded blocks, 1..10 elements.

Timings are one force-training step: energy + forces (create_graph) + force
loss backward to the parameters.  Run: python benchmarks/models_micro.py
"""

from __future__ import annotations

import time

import torch
from torch import nn

from amptorch.models.bpnn import BPNN
from amptorch.models.feature_layer import FeatureFunction

torch.manual_seed(0)
DT = torch.float64


def timeit(fn, repeat: int = 10) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def synthetic(n: int, f: int, neigh: int, n_el: int):
    feats = torch.randn(n, f, dtype=DT)
    pair_i = torch.arange(n).repeat_interleave(neigh)
    pair_j = torch.randint(0, n, (n * neigh,))
    dfeat = torch.randn(n * neigh, f, 3, dtype=DT) * 0.1
    numbers = torch.randint(1, n_el + 1, (n,))
    return feats, pair_i, pair_j, dfeat, numbers


def plain_features(pos, feats, dfeat, pair_i, pair_j):
    disp = pos.index_select(0, pair_j) - pos.index_select(0, pair_i)  # (P, 3)
    lin = torch.einsum("pfc,pc->pf", dfeat, disp)
    return feats + feats.new_zeros(feats.shape).index_add(0, pair_i, lin)


def step(net, feats, dfeat, pair_i, pair_j, numbers, use_function: bool):
    pos = torch.zeros(feats.shape[0], 3, dtype=DT, requires_grad=True)
    if use_function:
        x = FeatureFunction.apply(pos, None, feats, dfeat, pair_i, pair_j, None, numbers)
    else:
        x = plain_features(pos, feats, dfeat, pair_i, pair_j)
    e = net(x, numbers).sum()
    (f,) = torch.autograd.grad(e, pos, create_graph=True)
    loss = e**2 + (f**2).sum()
    loss.backward()


class StackedBPNN(nn.Module):
    """Stacked per-element weights; atoms sorted by element and padded to (E, n_max, F) for bmm."""

    def __init__(self, f: int, hidden: list[int], n_el: int):
        super().__init__()
        sizes = [f, *hidden, 1]
        self.w = nn.ParameterList()
        self.b = nn.ParameterList()
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            w = torch.empty(n_el, a, b, dtype=DT)
            for k in range(n_el):
                nn.init.xavier_uniform_(w[k])
            self.w.append(nn.Parameter(w))
            self.b.append(nn.Parameter(torch.zeros(n_el, 1, b, dtype=DT)))
        self.n_el = n_el

    def forward(self, x, numbers):
        idx = numbers - 1
        order = torch.argsort(idx, stable=True)
        counts = torch.bincount(idx, minlength=self.n_el)
        n_max = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(x.shape[0]) - starts.repeat_interleave(counts)
        el = idx[order]
        h = x.new_zeros(self.n_el, n_max, x.shape[1]).index_put((el, slot), x.index_select(0, order))
        for layer, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            h = torch.baddbmm(b, h, w)
            if layer < len(self.w) - 1:
                h = torch.tanh(h)
        out_sorted = h[el, slot, 0]
        return x.new_zeros(x.shape[0]).index_copy(0, order, out_sorted)


def net_only(m, x, numbers) -> None:
    e = m(x, numbers).sum()
    (g,) = torch.autograd.grad(e, x, create_graph=True)
    ((g**2).sum() + e).backward()


def compare_elements(n: int, f: int, neigh: int, hidden: list[int], n_el: int) -> tuple[float, ...]:
    """(loop, bmm) full force-training step, then (loop, bmm) network only, in seconds."""
    feats, pi, pj, dfeat, numbers = synthetic(n, f, neigh, n_el)
    loop = BPNN(f, list(range(1, n_el + 1)), hidden).double()
    stacked = StackedBPNN(f, hidden, n_el)
    x = feats.clone().requires_grad_(True)
    return (
        timeit(lambda: step(loop, feats, dfeat, pi, pj, numbers, True)),
        timeit(lambda: step(stacked, feats, dfeat, pi, pj, numbers, True)),
        timeit(lambda: net_only(loop, x, numbers)),
        timeit(lambda: net_only(stacked, x, numbers)),
    )


def main() -> None:
    n, f, neigh, hidden = 2000, 40, 40, [20] * 5
    print(f"N={n} F={f} pairs/atom={neigh} hidden={hidden} threads={torch.get_num_threads()}")
    feats, pi, pj, dfeat, numbers = synthetic(n, f, neigh, 1)
    net = BPNN(f, [1], hidden).double()
    for use in (True, False):
        t = timeit(lambda use=use: step(net, feats, dfeat, pi, pj, numbers, use))
        print(f"feature layer {'Function' if use else 'plain   '}: {t * 1e3:8.2f} ms / force-training step")
    print("elements  step: loop(ms) bmm(ms)   network only: loop(ms) bmm(ms)")
    for n_el in (1, 2, 3, 5, 10):
        t = [v * 1e3 for v in compare_elements(n, f, neigh, hidden, n_el)]
        print(f"{n_el:8d}  {t[0]:14.2f} {t[1]:7.2f}   {t[2]:22.2f} {t[3]:7.2f}")


if __name__ == "__main__":
    main()
