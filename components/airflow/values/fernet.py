"""Fernet keys that rotate from config and never change by accident.

Airflow encrypts connection passwords and extras, variables and trigger arguments with the
Fernet key(s) in `AIRFLOW__CORE__FERNET_KEY`: a comma-separated list whose first key
encrypts and every key decrypts (MultiFernet). AirflowRelease generates one
`random.RandomBytes` per *generation*: generation 1 is `<name>-fernet-key` (the key every
stack has had from the start; its name and inputs never change), generation N is
`<name>-fernet-key-<N>`. Raising `airflow.fernetKey.generation` adds a key in front and
keeps the previous one behind it, so nothing already encrypted becomes unreadable;
`airflow rotate-fernet-key` (a Job, `rotate: true`) then re-encrypts everything with the new
key, and `keepPrevious: false` finally drops the old one.

Pure functions only: AirflowRelease does the Pulumi wiring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config.fernet import (
    MAX_GENERATION as MAX_GENERATION,
    FernetConfig as FernetConfig,
    parse_fernet as parse_fernet,
    parse_previous_keys as parse_previous_keys,
)
from .rollout import pod_annotations

if TYPE_CHECKING:
    from ..config.airflow import AirflowConfig

# Pod annotation that changes whenever the key list changes, so every long-running Airflow
# pod restarts and reads the new `AIRFLOW__CORE__FERNET_KEY` (a changed Secret alone never
# restarts a pod, and the chart's own checksum annotations do not cover Secrets it did not make).
ANNOTATION = "airflow-k8s/fernet-keys"


def resource_name(component: str, generation: int) -> str:
    """The Pulumi name of a generation's RandomBytes. Generation 1 keeps the original name."""
    return f"{component}-fernet-key" if generation == 1 else f"{component}-fernet-key-{generation}"


def fernet_key(standard_base64: str) -> str:
    """32 random bytes as a Fernet key: URL-safe base64 with padding (44 characters)."""
    return standard_base64.replace("+", "-").replace("/", "_")


def key_list(keys_by_generation: dict[int, str], cfg: FernetConfig, imported: tuple[str, ...] = ()) -> str:
    """The value of `AIRFLOW__CORE__FERNET_KEY`: the active keys, newest first, then the imported ones."""
    return ",".join([fernet_key(keys_by_generation[g]) for g in cfg.active] + list(imported))


def fernet_values(cfg: AirflowConfig) -> dict[str, Any]:
    """Chart values that restart long-running pods when the key list changes.

    Nothing for a stack that never rotated (generation 1, no imported keys), so its values stay
    as they were. The annotation names generations (and counts imported keys), never key material.
    """
    fernet = cfg.fernet
    if fernet.generation == 1 and not fernet.imported:
        return {}
    marker = ",".join(str(g) for g in fernet.active) + (f"+{fernet.imported}" if fernet.imported else "")
    return pod_annotations(cfg, {ANNOTATION: marker})


def rotate_job_name(release: str, cfg: FernetConfig) -> str:
    """The rotation Job of this generation: a new generation is a new Job, which runs once."""
    return f"{release}-rotate-fernet-key-{cfg.generation}"
