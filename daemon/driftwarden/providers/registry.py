"""The set of providers the engine works with: `default_providers()` builds it, nothing registers.

A `ProviderSet` is a plain value: a mapping from resource type to provider, in creation order.
The engine (observe, plan, apply, reconcile) is handed one; it never looks providers up in a
global. `default_providers()` makes the set of every resource type driftwarden manages by
looking in each module of this package for the `Provider` classes it defines (the ones that
declare a `TypeInfo`), so adding a resource type is adding a module; importing a module
changes nothing.

What it must not do: hold state between calls (each call builds new providers), or know any
resource type by name.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Iterator, Mapping

from driftwarden.providers import __name__ as _package
from driftwarden.providers import __path__ as _package_path
from driftwarden.providers.base import Provider

# Modules of this package that hold shared code, not resource types.
_INFRASTRUCTURE = frozenset({"aws", "base", "registry", "ec2", "tag_styles", "tagging", "secret_sources"})


class ProviderSet(Mapping[str, Provider]):
    """Providers by type, iterated in creation order (`type_order`)."""

    def __init__(self, providers: Iterable[Provider]) -> None:
        by_type: dict[str, Provider] = {}
        for provider in sorted(providers, key=lambda p: (p.info.create_order, p.type)):
            if provider.type in by_type:
                raise ValueError(f"two providers declare the resource type {provider.type}")
            by_type[provider.type] = provider
        self._by_type = by_type

    def __getitem__(self, type_: str) -> Provider:
        return self._by_type[type_]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_type)

    def __len__(self) -> int:
        return len(self._by_type)

    def __repr__(self) -> str:
        return f"ProviderSet({', '.join(self._by_type)})"

    @property
    def type_order(self) -> tuple[str, ...]:
        """Resource types in creation order, derived from each type's declared `create_order`."""
        return tuple(self._by_type)


def provider_classes() -> list[type[Provider]]:
    """Every concrete provider class defined in this package, one per resource type."""
    found: list[type[Provider]] = []
    for module_info in sorted(pkgutil.iter_modules(_package_path), key=lambda m: m.name):
        if module_info.name in _INFRASTRUCTURE:
            continue
        module = importlib.import_module(f"{_package}.{module_info.name}")
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            # Only classes defined here that declare a type: shared base classes declare none.
            if (issubclass(cls, Provider) and cls.__module__ == module.__name__ and "info" in vars(cls)
                    and not inspect.isabstract(cls)):
                found.append(cls)
    return found


def default_providers() -> ProviderSet:
    """A new set of every resource type driftwarden manages."""
    return ProviderSet(cls() for cls in provider_classes())
