"""Read a function's environment once into a typed, validated settings model."""

from __future__ import annotations

import os
from functools import cache
from typing import TypeVar

from pydantic import BaseModel

SettingsT = TypeVar("SettingsT", bound=BaseModel)


@cache
def load_settings(model: type[SettingsT]) -> SettingsT:
    """Parse `os.environ` into `model` (field names are the variable names); cached per container."""
    values = {name: os.environ[name] for name in model.model_fields if name in os.environ}
    return model.model_validate(values)
