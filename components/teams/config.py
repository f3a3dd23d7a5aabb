"""Typed config of team task namespaces (the `teams` stack key) and the objects they imply.

Each team gets a namespace for its KubernetesPodOperator tasks: quota, defaults, a
ServiceAccount for its pods, the least RBAC Airflow needs to launch them there, and
NetworkPolicies that deny everything but DNS, the Airflow API and declared egress.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from ..core.reader import ConfigError, ConfigTypeError, Node, dns_label, quantity_value

# Namespaces no team may take: the cluster's own, and those the platform uses.
RESERVED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
RESERVED_PREFIXES = ("kube-", "openshift-")

# The API server refuses a Secret whose values hold more than 1 MiB together (MaxSecretSize).
MAX_SECRET_BYTES = 1024 * 1024

POD_SECURITY_LEVEL = "restricted"
# Pod Security levels a team namespace may enforce; `baseline` needs a stated reason.
POD_SECURITY_LEVELS = ("restricted", "baseline")
REASON_ANNOTATION = "airflow-k8s/pod-security-reason"


@dataclass(frozen=True)
class Egress:
    """Traffic a team's pods may send beyond DNS and the Airflow API."""

    cidr: str
    ports: tuple[int, ...] = ()
    except_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Team:
    name: str
    namespace: str
    quota: dict[str, str] = field(default_factory=dict)
    default_limits: dict[str, str] = field(default_factory=dict)
    default_requests: dict[str, str] = field(default_factory=dict)
    max_limits: dict[str, str] = field(default_factory=dict)
    allow_exec: bool = False
    egress: tuple[Egress, ...] = ()
    secrets: tuple[str, ...] = ()
    pod_security: str = POD_SECURITY_LEVEL
    """The Pod Security Admission level enforced in the namespace: `restricted` or `baseline`."""
    pod_security_reason: str | None = None
    """Why the team needs `baseline` (recorded on the namespace)."""
    limits_set: frozenset[str] = frozenset()
    """The parts of `limits` the team wrote (default, defaultRequest, max); the others are ours."""

    @property
    def service_account(self) -> str:
        return f"{self.name}-tasks"


# The LimitRange defaults a team gets when it sets none.
DEFAULT_LIMITS = {"cpu": "500m", "memory": "512Mi"}
DEFAULT_REQUESTS = {"cpu": "100m", "memory": "128Mi"}


def check_limit_range(key: str, team: Team) -> None:
    """ValidateLimitRange on a container item: default request <= default limit <= max, and default
    request <= max; a default this module applies (the team set none) counts like a written one.
    Run after each amount has been checked on its own (components/platform/guards.py)."""
    given = team.limits_set

    def said(part: str, res: str, value: str) -> str:
        applied = "" if part in given else f" (applied when {key}.{part} is unset)"
        return f"{key}.{part}.{res} is {value}{applied}"

    for res in ("cpu", "memory"):
        amounts = {
            "defaultRequest": team.default_requests.get(res),
            "default": team.default_limits.get(res),
            "max": team.max_limits.get(res),
        }
        for low_part, high_part in (("defaultRequest", "default"), ("default", "max"), ("defaultRequest", "max")):
            low, high = amounts[low_part], amounts[high_part]
            if low is None or high is None or quantity_value(low) <= quantity_value(high):
                continue
            blamed = high_part if high_part in given else low_part
            raise ConfigError(
                f"{key}.{blamed}.{res}",
                amounts[blamed],
                f"the API server refuses this LimitRange: {said(low_part, res, low)}, above "
                f"{said(high_part, res, high)}; a default request may not exceed the default limit, and neither may "
                "exceed the largest container (max).",
                f"raise {key}.{high_part}.{res} or lower {key}.{low_part}.{res} (set it to apply your own).",
            )


_QUOTA_KEYS = {
    "cpu": "requests.cpu",
    "memory": "requests.memory",
    "limitsCpu": "limits.cpu",
    "limitsMemory": "limits.memory",
}


def _quantities(node: Node, name: str, keys: tuple[str, ...]) -> dict[str, str]:
    sub = node.mapping(name)
    out = {}
    for key in keys:
        value = sub.quantity(key, None)
        if value is not None:
            out[key] = value
    sub.finish()
    return out


def _egress(node: Node) -> tuple[Egress, ...]:
    out = []
    for e in node.nodes("egress", "{cidr, ports, except}"):
        cidr = e.string("cidr")
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            raise ConfigError(e.key("cidr"), cidr, "expected a CIDR such as 10.0.0.0/16 or 0.0.0.0/0.") from None
        excepts = e.string_list("except", [])
        for j, ex in enumerate(excepts):
            try:
                inner = ipaddress.ip_network(ex, strict=True)
            except ValueError:
                raise ConfigError(f"{e.key('except')}[{j}]", ex, "expected a CIDR.") from None
            if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
                raise ConfigError(
                    f"{e.key('except')}[{j}]",
                    ex,
                    f"must lie inside {cidr} (an IPv{network.version} block takes IPv{network.version} exceptions).",
                )
        ports_raw = e.raw("ports", [])
        if not isinstance(ports_raw, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports_raw
        ):
            raise ConfigError(e.key("ports"), ports_raw, "expected a list of TCP port numbers from 1 to 65535.")
        e.finish()
        out.append(Egress(cidr=cidr, ports=tuple(ports_raw), except_cidrs=tuple(excepts)))
    return tuple(out)


def _pod_security(node: Node) -> tuple[str, str | None]:
    sub = node.mapping("podSecurity")
    level = sub.string("level", POD_SECURITY_LEVEL, choices=POD_SECURITY_LEVELS)
    reason = sub.string("reason", None)
    sub.finish()
    if level == "baseline" and not (reason or "").strip():
        raise ConfigError(
            sub.key("reason"),
            reason,
            "Pod Security level 'baseline' lets the team's pods run as root and keep Linux capabilities; "
            "it needs a stated reason (recorded on the namespace as " + REASON_ANNOTATION + ").",
            f"set {sub.key('reason')} to why, e.g. 'vendor image runs as root (ticket OPS-123)', "
            "or keep 'restricted' and run the image as a non-root user.",
        )
    if level == POD_SECURITY_LEVEL and reason is not None:
        raise ConfigError(sub.key("reason"), reason, "a reason is only taken for level 'baseline'.")
    return level, (reason.strip() if reason else None)


def parse_teams(raw: Any, *, airflow_namespace: str, other_namespaces: tuple[str, ...] = ()) -> tuple[Team, ...]:
    """Parse the `teams` list. Names and namespaces must be unique and not reserved."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigTypeError("teams", raw, "expected a list of teams: [{name, namespace, ...}].")
    teams: list[Team] = []
    seen_names: dict[str, int] = {}
    seen_ns: dict[str, int] = {}
    for i, item in enumerate(raw):
        node = Node(item, f"teams[{i}]")
        name = dns_label(node.key("name"), node.string("name"), max_len=40)
        namespace = dns_label(node.key("namespace"), node.string("namespace", f"{name}-tasks"))
        if name in seen_names:
            raise ConfigError(node.key("name"), name, f"teams[{seen_names[name]}] has the same name.")
        if namespace in seen_ns:
            raise ConfigError(
                node.key("namespace"),
                namespace,
                f"teams[{seen_ns[namespace]}] already uses this namespace; each team needs its own, "
                "or their Secrets and quotas would be shared.",
            )
        if namespace in RESERVED_NAMESPACES or namespace.startswith(RESERVED_PREFIXES):
            raise ConfigError(
                node.key("namespace"),
                namespace,
                "this is a system namespace; a team's tasks need a namespace of their own.",
            )
        if namespace == airflow_namespace or namespace in other_namespaces:
            raise ConfigError(
                node.key("namespace"),
                namespace,
                "the platform already uses this namespace (Airflow, Spark or monitoring); give the team its own.",
            )
        seen_names[name], seen_ns[namespace] = i, i
        quota_node = node.mapping("quota")
        quota: dict[str, str] = {}
        for key, resource in _QUOTA_KEYS.items():
            value = quota_node.quantity(key, None)
            if value is not None:
                quota[resource] = value
        pods = quota_node.integer("pods", 50, low=1, high=10000)
        quota["pods"] = str(pods)
        quota_node.finish()
        limits = node.mapping("limits")
        default_limits = _quantities(limits, "default", ("cpu", "memory"))
        default_requests = _quantities(limits, "defaultRequest", ("cpu", "memory"))
        max_limits = _quantities(limits, "max", ("cpu", "memory"))
        limits.finish()
        if not default_limits:
            default_limits = dict(DEFAULT_LIMITS)
        if not default_requests:
            default_requests = dict(DEFAULT_REQUESTS)
        secrets = node.string_list("secrets", [], item=lambda k, v: dns_label(k, v, max_len=253))
        level, reason = _pod_security(node)
        teams.append(
            Team(
                name=name,
                namespace=namespace,
                quota=quota,
                default_limits=default_limits,
                default_requests=default_requests,
                max_limits=max_limits,
                allow_exec=node.boolean("allowExec", False),
                egress=_egress(node),
                secrets=tuple(secrets),
                pod_security=level,
                pod_security_reason=reason,
                limits_set=frozenset(p for p in ("default", "defaultRequest", "max") if limits.has(p)),
            )
        )
        node.finish()
    return tuple(teams)


def parse_team_secrets(raw: Any, teams: tuple[Team, ...]) -> dict[str, dict[str, dict[str, str]]]:
    """The secret `teamSecrets` object: {team: {secret name: {key: value}}}; each secret must be declared
    in that team's `secrets` list, so a Secret can only ever land in its own team's namespace."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("teamSecrets", "[secret]", "expected an object {team: {secret: {key: value}}}.")
    by_name = {t.name: t for t in teams}
    out: dict[str, dict[str, dict[str, str]]] = {}
    for team_name, secrets in raw.items():
        if team_name not in by_name:
            raise ConfigError(
                f"teamSecrets.{team_name}", "[secret]", f"no such team; teams: {', '.join(by_name) or 'none'}."
            )
        if not isinstance(secrets, dict):
            raise ConfigError(f"teamSecrets.{team_name}", "[secret]", "expected an object {secret name: {key: value}}.")
        for secret_name, data in secrets.items():
            if secret_name not in by_name[team_name].secrets:
                raise ConfigError(
                    f"teamSecrets.{team_name}.{secret_name}",
                    "[secret]",
                    f"not declared in the team's secrets list ({', '.join(by_name[team_name].secrets) or 'empty'}).",
                )
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise ConfigError(f"teamSecrets.{team_name}.{secret_name}", "[secret]", "expected {key: string}.")
            size = sum(len(v.encode()) for v in data.values())
            if size > MAX_SECRET_BYTES:
                raise ConfigError(
                    f"teamSecrets.{team_name}.{secret_name}",
                    f"[{size} bytes]",
                    f"the API server refuses a Secret whose values hold more than 1 MiB ({MAX_SECRET_BYTES} bytes).",
                    "keep large files out of Secrets (an object store the task reads with its credentials).",
                )
        out[team_name] = {k: dict(v) for k, v in secrets.items()}
    for team in teams:
        missing = [s for s in team.secrets if s not in out.get(team.name, {})]
        if missing:
            raise ConfigError(
                f"teams.{team.name}.secrets",
                missing,
                "declared, but 'teamSecrets' has no value for them.",
                "pulumi config set --secret teamSecrets '{\"" + team.name + '": {"' + missing[0] + "\": {...}}}'",
            )
    return out


# ---------------------------------------------------------------------------
# Objects


def launcher_rules(team: Team) -> list[dict[str, Any]]:
    """What KubernetesPodOperator needs in the team namespace, nothing more."""
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    ]
    if team.allow_exec:
        rules.append({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]})
    return rules


def namespace_labels(team: Team, release: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": "airflow",
        "airflow-k8s/team": team.name,
        "airflow-k8s/tasks-for": release,
        "pod-security.kubernetes.io/enforce": team.pod_security,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": POD_SECURITY_LEVEL,
        "pod-security.kubernetes.io/warn": POD_SECURITY_LEVEL,
    }


def namespace_annotations(team: Team) -> dict[str, str]:
    """Why a team's namespace enforces less than `restricted` (audit and warn stay `restricted`)."""
    return {REASON_ANNOTATION: team.pod_security_reason} if team.pod_security_reason else {}


def network_policies(team: Team, airflow_namespace: str, api_port: int | None) -> list[dict[str, Any]]:
    """Default deny, then DNS, the Airflow API (Airflow 3) and the team's declared egress."""
    policies: list[dict[str, Any]] = [
        {"name": "default-deny", "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {
            "name": "allow-dns",
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {
                                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                            }
                        ],
                        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                    }
                ],
            },
        },
    ]
    if api_port is not None:
        policies.append(
            {
                "name": "allow-airflow-api",
                "spec": {
                    "podSelector": {},
                    "policyTypes": ["Egress"],
                    "egress": [
                        {
                            "to": [
                                {
                                    "namespaceSelector": {
                                        "matchLabels": {"kubernetes.io/metadata.name": airflow_namespace}
                                    },
                                    "podSelector": {"matchLabels": {"component": "api-server", "tier": "airflow"}},
                                }
                            ],
                            "ports": [{"protocol": "TCP", "port": api_port}],
                        }
                    ],
                },
            }
        )
    if team.egress:
        rules = []
        for e in team.egress:
            block: dict[str, Any] = {"cidr": e.cidr}
            if e.except_cidrs:
                block["except"] = list(e.except_cidrs)
            rule: dict[str, Any] = {"to": [{"ipBlock": block}]}
            if e.ports:
                rule["ports"] = [{"protocol": "TCP", "port": p} for p in e.ports]
            rules.append(rule)
        policies.append(
            {"name": "allow-egress", "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}}
        )
    return policies
