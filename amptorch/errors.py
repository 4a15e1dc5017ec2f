"""The package's error types.

Every bad input raises :class:`InputError` with a one-line message naming the
structure (when known), the field and what was expected.
"""

from __future__ import annotations

import re

# "field.path[k]: message": the leading field path of a message given without ``path``
_LEADING_PATH = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)

class InputError(ValueError):
    """A structure, parameter or file that the package cannot accept.

    Args:
        message: what was wrong and what was expected ("got -1; expected > 0 Å").
        path: the field it concerns, as a dotted key path relative to the
            object that raised ("MCSHs.sigmas"); an upper layer places it in
            its own context with :meth:`within` instead of rewriting the text.
            Without it, a message written as "MCSHs.sigmas: got ..." carries
            its leading field path the same way.
    """

    def __init__(self, message: str, path: str | None = None):
        if path is None and (m := _LEADING_PATH.match(message)):
            path, message = m.group(1), m.group(2)
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)

    def within(self, prefix: str) -> InputError:
        """The same error with its field path under ``prefix`` (e.g. ``"config dataset.fp_params"``).

        A path that starts with the key the prefix ends with continues it
        instead of repeating it: ``dataset.scaling`` + ``scaling.type`` gives
        ``dataset.scaling.type``.
        """
        return InputError(self.message, join_path(prefix, self.path))


def join_path(prefix: str, path: str | None) -> str:
    """``prefix`` continued by the field ``path`` (see :meth:`InputError.within`)."""
    if not path:
        return prefix
    head, _, last = prefix.rpartition(".")
    first, _, rest = path.partition(".")
    if first == last.rpartition(" ")[2]:  # "config dataset" ends with the key "dataset"
        return f"{prefix}.{rest}" if rest else prefix
    return f"{prefix}.{path}"


def where(index: int | None) -> str:
    """Prefix naming the structure, e.g. ``"structure 3: "`` (empty if unknown)."""
    return "" if index is None else f"structure {index}: "
