"""Fixtures for the model tests."""

import pytest

from ._helpers import make_structure


@pytest.fixture(params=["bulk", "slab", "molecule"])
def structure(request):
    return request.param, make_structure(request.param)
