"""The descriptor registry: one place that says what each fingerprint scheme is.

A descriptor module registers itself once, at its end::

    register(DescriptorEntry("GMP", GMP, ("gmpordernorm", "gmp"), _from_params, any_element=True, fused=_fused))

and everything that needs to know about descriptors asks here: the config
(which ``fp_scheme`` names exist), the trainer (building a descriptor from the
original's ``fp_params``), checkpoints and databases (rebuilding one from its
saved ``settings()``), the CLI (its ``--scheme`` choices) and the calculator
(whether a fused path exists, and which elements a model may be asked
about). Adding a descriptor touches its own module only.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from amptorch.errors import InputError

#: ``from_params(fp_params or None, scheme, elements or None, cutoff_params or None) -> Descriptor``.
#: ``elements`` is None when the element list is not known yet (it is then only validating:
#: an entry with ``needs_elements`` may check its parameters and return None).
FromParams = Callable[[Mapping | None, str, Sequence[str] | None, Mapping | None], Any]


@dataclass(frozen=True)
class DescriptorEntry:
    """What the rest of the package needs to know about one descriptor class.

    Attributes:
        kind: the ``"kind"`` of its ``settings()`` dict (saved in checkpoints and databases).
        cls: the Descriptor subclass; ``cls.from_settings(settings without "kind")`` rebuilds it.
        schemes: the ``dataset.fp_scheme`` names that select it (lower case).
        from_params: builder from the original AmpTorch's ``fp_params`` (see ``FromParams``);
            its InputErrors carry key paths relative to ``fp_params``; ``cutoff_params`` arrives
            checked (the config's ``CutoffParams``, as a dict).
        needs_elements: the descriptor has per-element channels, so it is built
            only once the training elements are known.
        any_element: element policy. True: it describes any element (GMP, through
            its densities), so a shared network may be asked about elements it
            never saw (with a warning); False: only the elements it was built for.
        fused: ``fused(descriptor, skin) -> kernel or None``: the calculator's fused
            path (``features(atoms, n_threads)`` then ``forces(dEdG, n_threads)``),
            or None where this descriptor (or these settings) has none.
        twin: ``twin(descriptor, elements) -> torch.nn.Module``: the descriptor's torch twin
            for recompute-mode training (``dataset.features: "recompute"``), called with the
            atomic numbers it will see; it imports torch lazily (descriptors import no torch).
            None: the descriptor trains from stored derivatives only.
        auto_params: ``auto_params(nn_distance) -> fp_params``: its default settings for data whose
            nearest-neighbour distance is ``nn_distance`` (Å): what ``dataset.fp_params: "auto"`` (the
            default) builds. None: the descriptor has no default and ``fp_params`` must be given.
    """

    kind: str
    cls: type
    schemes: tuple[str, ...]
    from_params: FromParams
    needs_elements: bool = False
    any_element: bool = False
    fused: Callable[[Any, float], Any] | None = None
    twin: Callable[[Any, Sequence[int]], Any] | None = None
    auto_params: Callable[[float], dict] | None = None


_BY_KIND: dict[str, DescriptorEntry] = {}
_BY_SCHEME: dict[str, DescriptorEntry] = {}


def register(entry: DescriptorEntry) -> DescriptorEntry:
    """Add a descriptor; its kind and schemes must not be taken by another class."""
    schemes = tuple(s.lower() for s in entry.schemes)
    old = _BY_KIND.get(entry.kind)
    if old is not None and old.cls is not entry.cls:
        raise InputError(f"register: kind {entry.kind!r} is already {old.cls.__name__}; expected a new kind")
    for s in schemes:
        taken = _BY_SCHEME.get(s)
        if taken is not None and taken.kind != entry.kind:
            raise InputError(f"register: fp_scheme {s!r} already selects {taken.kind}; expected a new name")
    if old is not None:  # re-registering the same class (a reloaded module) replaces its schemes
        for s in old.schemes:
            _BY_SCHEME.pop(s, None)
    _BY_KIND[entry.kind] = entry
    for s in schemes:
        _BY_SCHEME[s] = entry
    return entry


def schemes() -> list[str]:
    """Every registered ``fp_scheme`` name, sorted."""
    return sorted(_BY_SCHEME)


def _unknown(what: str, name: Any, valid: list[str]) -> InputError:
    near = difflib.get_close_matches(str(name), valid, n=1, cutoff=0.4)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return InputError(f"got {name!r}{hint}; expected one of {valid}", what)


def by_scheme(scheme: str) -> DescriptorEntry:
    """The entry an ``fp_scheme`` selects (InputError naming the valid ones)."""
    entry = _BY_SCHEME.get(str(scheme).lower())
    if entry is None:
        raise _unknown("fp_scheme", scheme, schemes())
    return entry


def by_kind(kind: str) -> DescriptorEntry:
    """The entry of a settings ``kind``."""
    entry = _BY_KIND.get(kind)
    if entry is None:
        err = _unknown("descriptor settings kind", kind, sorted(_BY_KIND))
        raise InputError(f"{err.message}; a custom descriptor's module must be imported first", err.path)
    return entry


def entry_of(descriptor: Any) -> DescriptorEntry:
    """The entry of a descriptor object (by its ``settings()["kind"]``)."""
    return by_kind(descriptor.settings()["kind"])


def from_settings(settings: Mapping) -> Any:
    """Rebuild a descriptor from its ``settings()`` dict (as saved in a checkpoint or database)."""
    if not isinstance(settings, Mapping):
        raise InputError(f"got {type(settings).__name__}; expected a dict", "descriptor settings")
    args = dict(settings)
    entry = by_kind(args.pop("kind", None))
    return entry.cls.from_settings(args)


__all__ = ["DescriptorEntry", "by_kind", "by_scheme", "entry_of", "from_settings", "register", "schemes"]
