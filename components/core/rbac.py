"""A namespaced Role and the RoleBinding that grants it: the pair every component declares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s


def bound_role(
    resource_name: str,
    metadata: Mapping[str, Any],
    rules: Sequence[Mapping[str, Any]],
    subjects: pulumi.Input[Sequence[Any]],
    opts: pulumi.ResourceOptions,
) -> k8s.rbac.v1.Role:
    """`<resource_name>-role` with `rules`, and `<resource_name>-binding` (same metadata) granting it to
    `subjects`. The binding names the Role through its Output, so it is created after it."""
    role = k8s.rbac.v1.Role(f"{resource_name}-role", metadata=dict(metadata), rules=list(rules), opts=opts)
    k8s.rbac.v1.RoleBinding(
        f"{resource_name}-binding",
        metadata=dict(metadata),
        role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.metadata.name},
        subjects=subjects,
        opts=opts,
    )
    return role
