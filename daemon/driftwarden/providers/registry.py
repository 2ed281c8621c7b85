"""Loads every provider module so that each resource type is registered exactly once.

Provider modules register themselves with `@register` when imported; this module imports
all of them (every module of the package except the shared infrastructure), so adding a
resource type is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from driftwarden.providers import __name__ as _package
from driftwarden.providers import __path__ as _package_path
from driftwarden.providers.base import REGISTRY, Provider

# Modules of this package that hold shared code, not resource types.
_INFRASTRUCTURE = frozenset({"aws", "base", "registry", "ec2"})


def load_providers() -> Mapping[str, Provider]:
    """Every registered provider by type, importing provider modules on first use."""
    for module in pkgutil.iter_modules(_package_path):
        if module.name not in _INFRASTRUCTURE:
            importlib.import_module(f"{_package}.{module.name}")
    return REGISTRY
