"""The component package: AirflowPlatform served to every Pulumi language.

Pulumi infers the package schema from AirflowPlatform's annotations (components/platform/component.py);
the inference has no way to mark an input secret, so the provider adds `secret: true` to the
credential inputs (`SECRET_ARGS`) before it answers the engine: SDKs generated from the schema
then keep those values secret everywhere.
"""

import json
from typing import Any

from pulumi import InputPropertiesError, Inputs, ResourceOptions
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.experimental.util import camel_case
from pulumi.provider.provider import ConstructResult
from pulumi.provider.server import ComponentInitError

from .core.arguments import ArgumentError
from .platform.component import PACKAGE, SECRET_ARGS, AirflowPlatform

VERSION = "0.2.0"
"""The package version (kept equal to the distribution's in pyproject.toml by a test)."""

COMPONENTS: list[type[Any]] = [AirflowPlatform]


def mark_secrets(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every credential input of AirflowPlatform marked secret."""
    resource = schema["resources"][f"{PACKAGE}:index:AirflowPlatform"]
    for arg in SECRET_ARGS:
        resource["inputProperties"][camel_case(arg)]["secret"] = True
    resource["properties"]["adminPassword"]["secret"] = True
    return schema


class AirflowK8sProvider(ComponentProvider):
    """ComponentProvider whose schema marks the credential inputs secret, and whose components'
    argument errors reach the engine as what they are: a bad input property, named as the
    program wrote it (`airflow.excutor`, `taskImages.etl`), in one message with no traceback."""

    def __init__(self) -> None:
        super().__init__(COMPONENTS, PACKAGE, None, VERSION)
        assert self.schema is not None
        self.schema = json.dumps(mark_secrets(json.loads(self.schema)))

    def construct(
        self, name: str, resource_type: str, inputs: Inputs, options: ResourceOptions | None = None
    ) -> ConstructResult:
        try:
            return super().construct(name, resource_type, inputs, options)
        except ComponentInitError as exc:
            if not isinstance(exc.inner, ArgumentError):
                raise
            error = exc.inner
        path = schema_path(error.path)
        # The engine shows the message, then each property path with its reason.
        raise InputPropertiesError(
            f"{error.component} '{error.resource_name}': invalid argument",
            [{"property_path": path, "reason": error.reason}],
        ) from None


def schema_path(path: str) -> str:
    """An argument path as the package schema (and so a YAML or TypeScript program) spells its first
    part: `task_images.etl` -> `taskImages.etl`."""
    cut = next((i for i, char in enumerate(path) if char in ".["), len(path))
    return camel_case(path[:cut]) + path[cut:]


def schema() -> dict[str, Any]:
    """The package schema, as `pulumi package get-schema` prints it."""
    provider = AirflowK8sProvider()
    assert provider.schema is not None
    result: dict[str, Any] = json.loads(provider.schema)
    return result


def serve() -> None:
    """Run the provider (the engine passes its address in argv)."""
    import sys

    from pulumi.provider import main

    main(AirflowK8sProvider(), sys.argv[1:])
