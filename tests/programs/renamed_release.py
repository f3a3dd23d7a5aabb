"""AirflowRelease under a configurable name, optionally aliased to its old one; and a random
key that can move from the root stack into a component (tests/test_stability.py)."""

import pulumi
import pulumi_random as random

from components import AirflowRelease

cfg = pulumi.Config()
name = cfg.get("componentName") or "airflow"
old_name = cfg.get("aliasOf")
aliases = [pulumi.Alias(name=old_name)] if old_name else None

AirflowRelease(
    name,
    {"settings": {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}}},
    opts=pulumi.ResourceOptions(aliases=aliases),
)

if cfg.get_bool("keyInComponent"):

    class Holder(pulumi.ComponentResource):
        def __init__(self, holder_name: str) -> None:
            super().__init__("airflow-k8s:test:Holder", holder_name, {}, None)
            moved = [pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)] if cfg.get_bool("keyAliased") else None
            random.RandomBytes("extra-key", length=32, opts=pulumi.ResourceOptions(parent=self, aliases=moved))
            self.register_outputs({})

    Holder("holder")
else:
    random.RandomBytes("extra-key", length=32)
