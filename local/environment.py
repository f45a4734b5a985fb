"""Run code with some environment variables set (or unset) and put them back afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager


@contextmanager
def applied_environment(variables: Mapping[str, str], *, unset: Iterable[str] = ()) -> Iterator[None]:
    """Set `variables` and remove `unset` for the duration; only those names are touched and restored."""
    removed = tuple(unset)
    saved = {name: os.environ.get(name) for name in (*variables, *removed)}
    for name in removed:
        os.environ.pop(name, None)
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
