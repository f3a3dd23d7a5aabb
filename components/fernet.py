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

import base64
import binascii
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._reader import ConfigError, Node
from .rollout import pod_annotations

if TYPE_CHECKING:
    from .config import AirflowConfig

MAX_GENERATION = 100
# Pod annotation that changes whenever the key list changes, so every long-running Airflow
# pod restarts and reads the new `AIRFLOW__CORE__FERNET_KEY` (a changed Secret alone never
# restarts a pod, and the chart's own checksum annotations do not cover Secrets it did not make).
ANNOTATION = "airflow-k8s/fernet-keys"


@dataclass(frozen=True)
class FernetConfig:
    """`airflow.fernetKey`: which generated key encrypts, which ones still decrypt."""

    generation: int = 1
    keep_previous: bool = True
    rotate: bool = False
    imported: int = 0  # keys from elsewhere (`previousFernetKeys`), kept behind the generated ones

    @property
    def generations(self) -> tuple[int, ...]:
        """Every generation the stack declares (1..N): old keys stay in Pulumi state, so a
        premature `keepPrevious: false` can be undone."""
        return tuple(range(1, self.generation + 1))

    @property
    def active(self) -> tuple[int, ...]:
        """Generations in `AIRFLOW__CORE__FERNET_KEY`, the encrypting one first."""
        if self.generation > 1 and self.keep_previous:
            return (self.generation, self.generation - 1)
        return (self.generation,)


def parse_fernet(node: Node) -> FernetConfig:
    """Read `<airflow>.fernetKey` from the `airflow` node."""
    sub = node.mapping("fernetKey")
    cfg = FernetConfig(
        generation=sub.integer("generation", 1, low=1, high=MAX_GENERATION),
        keep_previous=sub.boolean("keepPrevious", True),
        rotate=sub.boolean("rotate", False),
    )
    sub.finish()
    return cfg


def resource_name(component: str, generation: int) -> str:
    """The Pulumi name of a generation's RandomBytes. Generation 1 keeps the original name."""
    return f"{component}-fernet-key" if generation == 1 else f"{component}-fernet-key-{generation}"


def fernet_key(standard_base64: str) -> str:
    """32 random bytes as a Fernet key: URL-safe base64 with padding (44 characters)."""
    return standard_base64.replace("+", "-").replace("/", "_")


def key_list(keys_by_generation: dict[int, str], cfg: FernetConfig, imported: tuple[str, ...] = ()) -> str:
    """The value of `AIRFLOW__CORE__FERNET_KEY`: the active keys, newest first, then the imported ones."""
    return ",".join([fernet_key(keys_by_generation[g]) for g in cfg.active] + list(imported))


def parse_previous_keys(value: str, key: str = "previousFernetKeys") -> tuple[str, ...]:
    """The secret `previousFernetKeys`: Fernet keys from elsewhere (an installation this stack
    replaces, or the key a `pulumi destroy` left in the retained Secret), comma-separated.
    They only decrypt; the generated key encrypts. The message never shows a key."""
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    if not keys:
        raise ConfigError(key, "[secret]", "expected one or more Fernet keys, separated by commas.")
    for i, item in enumerate(keys):
        try:
            raw = base64.urlsafe_b64decode(item.encode())
        except (ValueError, binascii.Error):
            raw = b""
        if len(item) != 44 or len(raw) != 32:
            raise ConfigError(
                key,
                "[secret]",
                f"key {i + 1} of {len(keys)} is not a Fernet key (32 bytes in URL-safe base64: 44 characters "
                "ending in '=').",
                f"kubectl get secret <release>-pulumi-fernet-key -o jsonpath='{{.data.fernet-key}}' | base64 -d "
                f"| pulumi config set --secret {key}",
            )
    return tuple(dict.fromkeys(keys))


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
