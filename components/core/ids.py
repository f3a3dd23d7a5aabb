"""Ids that one owner sets (a connection, a Variable): declared again elsewhere, they are refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .reader import ConfigError


def check_no_clash(key: str, declared: Mapping[str, Any], platform: Mapping[str, tuple[str, str]]) -> None:
    """Ids the platform already sets cannot be declared again.

    `platform`: id -> (the config key that sets it, what to do instead)."""
    owners = {ident.upper(): (ident, owner) for ident, owner in platform.items()}
    for ident in declared:
        if ident.upper() in owners:
            theirs, (owner, advice) = owners[ident.upper()]
            raise ConfigError(
                f"{key}.{ident}",
                ident,
                f"'{theirs}' is already set by the '{owner}' config; one id cannot have two values.",
                f"remove '{ident}' from {key}; {advice}",
            )
