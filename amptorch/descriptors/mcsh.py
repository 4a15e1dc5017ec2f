"""Maxwell-Cartesian spherical harmonics (MCSH) as monomial tables.

The MCSH component of an index tuple with n_x x's, n_y y's and n_z z's is
Maxwell's polynomial S(x) = (-1)^n r^(2n+1) d_{a1}...d_{an} (1/r); it obeys
S_{+a} = (2n+1) x_a S - r^2 d_a S (derivative of r^(-2n-1) S). The kernel
turns each monomial x^k y^l z^m into a product of Gaussian moments, so a
component is handed over as its list of (coefficient, k, l, m).

Polynomials are dicts {(k, l, m, p): coef} in x, y, z and R = r^2, the form
the recursion produces. Solid harmonics expand R^p; the original's
non-solid variant sets R = 1 and scales each monomial by inv_rs^(k+l+m).
"""

from __future__ import annotations

from functools import cache
from math import comb, factorial

Poly = dict[tuple[int, int, int, int], float]

MAX_ORDER = 9


def _add(poly: Poly, key: tuple[int, int, int, int], value: float) -> None:
    v = poly.get(key, 0.0) + value
    if v == 0.0:
        poly.pop(key, None)
    else:
        poly[key] = v


def _step(poly: Poly, n: int, axis: int) -> Poly:
    """S_{+axis} = (2n+1) x_axis S - R d_axis S for S of order n."""
    out: Poly = {}
    for (k, l, m, p), c in poly.items():
        e = [k, l, m]
        up = e.copy()
        up[axis] += 1
        _add(out, (*up, p), (2 * n + 1) * c)
        # d_axis of x^e R^p: e_a x^(e-1) R^p + p x^e R^(p-1) 2 x_a; times -R
        if e[axis] > 0:
            down = e.copy()
            down[axis] -= 1
            _add(out, (*down, p + 1), -e[axis] * c)
        if p > 0:
            _add(out, (*up, p), -2 * p * c)
    return out


@cache
def maxwell(nx: int, ny: int, nz: int) -> tuple[tuple[tuple[int, int, int, int], float], ...]:
    """Maxwell polynomial of the component (nx, ny, nz) in x, y, z, R = r^2."""
    poly: Poly = {(0, 0, 0, 0): 1.0}
    n = 0
    for axis, count in enumerate((nx, ny, nz)):
        for _ in range(count):
            poly = _step(poly, n, axis)
            n += 1
    return tuple(sorted(poly.items()))


def monomials(
    nx: int, ny: int, nz: int, solid: bool = True, inv_rs: float = 1.0
) -> list[tuple[float, int, int, int]]:
    """Component (nx, ny, nz) as [(coef, k, l, m)], R eliminated."""
    out: dict[tuple[int, int, int], float] = {}
    for (k, l, m, p), c in maxwell(nx, ny, nz):
        if not solid:
            key = (k, l, m)
            out[key] = out.get(key, 0.0) + c * inv_rs ** (k + l + m)
            continue
        # R^p = sum p!/(a! b! g!) x^2a y^2b z^2g
        for a in range(p + 1):
            for b in range(p - a + 1):
                g = p - a - b
                key = (k + 2 * a, l + 2 * b, m + 2 * g)
                out[key] = out.get(key, 0.0) + c * comb(p, a) * comb(p - a, b)
    return [(c, *key) for key, c in sorted(out.items()) if c != 0.0]


def groups(order: int) -> list[tuple[int, int, int]]:
    """The component classes of an order: partitions nx >= ny >= nz, descending.

    Group g (1-based in the original's ``"gmp"`` scheme) is the g-th entry.
    """
    out = []
    for nx in range(order, -1, -1):
        for ny in range(order - nx, -1, -1):
            nz = order - nx - ny
            if nx >= ny >= nz:
                out.append((nx, ny, nz))
    return out


def group_components(partition: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    """Distinct permutations of a partition, e.g. (2, 1, 0) -> six components."""
    seen: list[tuple[int, int, int]] = []
    a, b, c = partition
    for perm in ((a, b, c), (a, c, b), (b, a, c), (b, c, a), (c, a, b), (c, b, a)):
        if perm not in seen:
            seen.append(perm)
    return seen


def multiplicity(nx: int, ny: int, nz: int) -> int:
    """Number of index tuples with these counts, n! / (nx! ny! nz!)."""
    return factorial(nx + ny + nz) // (factorial(nx) * factorial(ny) * factorial(nz))


def components(order: int) -> list[tuple[int, int, int]]:
    """Every component (nx, ny, nz) of an order, grouped as in :func:`groups`."""
    return [c for g in groups(order) for c in group_components(g)]
