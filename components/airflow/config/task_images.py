"""The images of KubernetesPodOperator tasks (the `taskImages` stack key), delivered as Airflow Variables.

DAGs name an image by role through `k8s_conventions.image(role, default)`, a templated
field that reads the Airflow Variable `k8s_image_<role>` when the task runs. This key
sets those Variables from the stack, so a registry copy or a new tag is a config change,
not a DAG change and not a Variable typed into the UI:

    taskImages:
      python: registry.example.com/mirror/python:3.13.7-slim-bookworm
      task: registry.example.com/data/airflow-k8s-task:1.0.0@sha256:<64 hex>

Every image must be pinned: a tag other than `latest`, or a digest. The Variables travel
with the stack's `variables` (one Secret, read through Airflow's LocalFilesystemBackend);
declaring one of them in `variables` as well is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ...core.reader import ConfigError, Node

VARIABLE_PREFIX = "k8s_image_"
# The roles dags/k8s_conventions.py uses (others are allowed: `image("<role>", default)`).
KNOWN_ROLES = ("python", "no_python", "task")

_ROLE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
# [registry[:port]/]path[:tag][@sha256:digest], as the container runtimes parse it.
IMAGE_REFERENCE = re.compile(
    r"^(?P<name>(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def pin_problem(reference: str) -> str | None:
    """Why an image reference is not pinned (or not an image reference), else None."""
    match = IMAGE_REFERENCE.match(reference)
    if not match:
        return "is not an image reference ([registry/]repository[:tag][@sha256:digest])"
    if match.group("digest"):
        return None
    tag = match.group("tag")
    if tag is None:
        return "has no tag, so it means ':latest': each pod may start a different image"
    if tag == "latest":
        return "is ':latest': each pod may start a different image"
    return None


def variable_name(role: str) -> str:
    return f"{VARIABLE_PREFIX}{role}"


def parse_task_images(raw: Any, key: str = "taskImages") -> dict[str, str]:
    """Role -> pinned image reference."""
    node = Node(raw, key, named_by_user=True)
    images: dict[str, str] = {}
    for role in node.data:
        if not isinstance(role, str) or not _ROLE.match(role):
            raise ConfigError(
                node.key(str(role)),
                role,
                "a role is lower-case letters, digits and '_' (at most 50), starting with a letter: the name a DAG "
                f"passes to k8s_conventions.image(); the roles the examples use: {', '.join(KNOWN_ROLES)}.",
            )
        value = node.string(role)
        problem = pin_problem(value)
        if problem:
            raise ConfigError(
                node.key(role),
                value,
                f"the image {problem}; expected an image pinned by tag (not 'latest') or by digest, "
                "e.g. python:3.13.7-slim-bookworm or registry.example.com/team/app@sha256:<64 hex>.",
            )
        images[role] = value
    node.finish()
    return images


def task_image_variables(images: Mapping[str, str]) -> dict[str, str]:
    """The Airflow Variables `k8s_image_<role>` that k8s_conventions.image() reads."""
    return {variable_name(role): image for role, image in sorted(images.items())}


def platform_variables(images: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Variable -> (the config key that sets it, what to do instead), for the clash check with `variables`."""
    return {
        variable_name(role): (f"taskImages.{role}", f"set the image with taskImages.{role} only.") for role in images
    }
