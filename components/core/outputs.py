"""A component's outputs are the attributes its class annotates: named once, in the class body."""

from __future__ import annotations

import pulumi


def register_annotated_outputs(component: pulumi.ComponentResource) -> None:
    """`register_outputs` with every attribute that the component's class annotates, in that order."""
    component.register_outputs({name: getattr(component, name) for name in type(component).__annotations__})
