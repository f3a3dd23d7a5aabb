"""Errors in a component's arguments, told as the calling program wrote them.

The settings a stack file holds can also be passed to the components as arguments (a Python
program's `AirflowRelease(..., {"settings": {...}})`, a YAML or TypeScript program's
`AirflowPlatform` properties). The parsers check both the same way and raise `ConfigError`
named after the stack file's keys; a component turns that into `ArgumentError`, named after
the argument path the caller wrote (`settings.excutor`), with no word of stack files.

`ArgumentError` is a `pulumi.RunError`: Pulumi's Python language host prints such an error's
message alone, where any other exception comes with the traceback of the code that raised it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pulumi

from .reader import ConfigError

PROJECT_PREFIX = "airflow-k8s:"


class ArgumentError(ConfigError, pulumi.RunError):
    """A component's argument is not valid: `path` is the argument path as the caller wrote it,
    `reason` what is wrong with it and how to fix it."""

    def __init__(self, component: str, name: str, path: str, error: ConfigError) -> None:
        ConfigError.__init__(self, path, error.value, error.allowed, error.fix, caller_fix=error.caller_fix)
        self.component = component
        self.resource_name = name
        self.path = path
        # What the parser said of its key (`'airflow.excutor'`) it now says of the argument.
        self.reason = error.detail(caller=True).replace(f"'{error.key}'", f"'{path}'")
        self.args = (f"{component} '{name}': argument '{path}': {self.reason}",)

    def __str__(self) -> str:
        return str(self.args[0])


def argument_path(key: str, arguments: Mapping[str, str]) -> str:
    """A parser's key (`airflow-k8s:databaseUrl`, `taskImages.etl`, `airflow.excutor`) as the
    argument path: its first part renamed by `arguments` ({parser key: argument name})."""
    key = key.removeprefix(PROJECT_PREFIX)
    cut = next((i for i, char in enumerate(key) if char in ".["), len(key))
    return arguments.get(key[:cut], key[:cut]) + key[cut:]


@contextmanager
def as_arguments(component: str, name: str, arguments: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn a ConfigError raised inside into an ArgumentError of `component` `name`, its key
    renamed to the argument path (`arguments`: {parser key: argument name})."""
    try:
        yield
    except ArgumentError:
        raise
    except ConfigError as error:
        raise ArgumentError(component, name, argument_path(error.key, arguments or {}), error) from None
