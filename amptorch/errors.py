"""The package's error types.

Every bad input raises :class:`InputError` with a one-line message naming the
structure (when known), the field and what was expected.
"""


class InputError(ValueError):
    """A structure, parameter or file that the package cannot accept."""


def where(index: int | None) -> str:
    """Prefix naming the structure, e.g. ``"structure 3: "`` (empty if unknown)."""
    return "" if index is None else f"structure {index}: "
