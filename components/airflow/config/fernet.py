"""`airflow.fernetKey` and `previousFernetKeys`: which Fernet keys exist, parsed at the edge.

The values that use them (the key list, the restart annotation, the rotation Job) are in
components/airflow/values/fernet.py.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ...core.reader import ConfigError, Node

MAX_GENERATION = 100


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
