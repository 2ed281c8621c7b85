"""One cluster's resources driven through their providers, as the engine would: for provider tests.

`ProviderWorld` holds the resources of a manifest by component, a driftwarden `Context` and the
attributes of what was created, and runs a provider's create, read and update with exactly what
the plan and `apply.py` would hand over. Subclasses set it up for their resource types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from driftwarden.engine.graph import Resource
from driftwarden.engine.plan import diff_fields, diff_tags, resolve
from driftwarden.providers.base import Context, Observed, Provider, converge
from driftwarden.providers.registry import default_providers


class ProviderWorld:
    resources: dict[str, Resource]
    ctx: Context

    def __init__(self) -> None:
        self.providers = default_providers()
        self.attributes: dict[str, Mapping[str, Any]] = {}
        self.observed: dict[str, Observed] = {}

    def provider(self, component: str) -> Provider:
        return self.providers[self.resources[component].type]

    def desired(self, component: str) -> dict[str, Any]:
        """The component's desired fields with Refs resolved, normalised by its provider."""
        resource = self.resources[component]
        return self.provider(component).normalize_desired(resolve(resource.desired, self.attributes))

    def create(self, *components: str) -> Observed:
        """Create components in order with their providers; returns the last one."""
        created = None
        for component in components:
            resource = self.resources[component]
            created = self.provider(component).create(self.ctx, resource, self.desired(component))
            self.attributes[resource.key] = created.attributes
            self.observed[component] = created
        assert created is not None
        return created

    def read(self, component: str) -> list[Observed]:
        """What the component's provider reads that carries this component's key."""
        key = self.resources[component].key
        return [o for o in self.provider(component).read(self.ctx) if o.key == key]

    def read_one(self, component: str) -> Observed:
        found = self.read(component)
        assert len(found) == 1, found
        return found[0]

    def diff(self, component: str, observed: Observed) -> list[Any]:
        """Field and tag differences between Git and `observed`, as the plan computes them."""
        provider = self.provider(component)
        resource = self.resources[component]
        return diff_fields(self.desired(component), observed.fields, skip=provider.create_only) + diff_tags(
            resource.tags, observed.tags
        )

    def changed(self, component: str, observed: Observed) -> list[str]:
        """The top-level names `apply.py` hands to `update` for this diff."""
        return sorted({d.path.split(".")[0] for d in self.diff(component, observed)})

    def update(self, component: str, observed: Observed) -> Observed:
        """Converge (tags by the declared tag style, the rest by `update`) with exactly what the plan would hand over."""
        changed = self.changed(component, observed)
        assert changed, "update called without drift"
        return converge(
            self.provider(component),
            self.ctx, self.resources[component], self.desired(component), observed, changed
        )
