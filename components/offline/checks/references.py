# Longer than 600 lines: one index of the rendered objects (_Index) and one checker (_Checker) whose
# methods all read it, one method per kind of reference.
"""Referential integrity across every object: Secrets, ConfigMaps, claims, classes, accounts, RBAC,
Service selectors, ServiceMonitors, namespaces and duplicates."""

from __future__ import annotations

import re
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core.workloads import pod_template_of
from .model import (
    _BUILTIN_CLUSTER_ROLES,
    _BUILTIN_NAMESPACES,
    _BUILTIN_ROLES,
    _BUILTIN_SERVICE_ACCOUNTS,
    ClusterFacts,
    Item,
    Problem,
    _as_dict,
    _as_list,
    _crd_scopes,
    _gk,
    _ident,
    _meta,
    _name,
    _namespace,
    _namespaced,
    _str_map,
)

# --------------------------------------------------------------------------- references


def _mounted_files(container: Mapping[str, Any], spec: Mapping[str, Any]) -> set[str]:
    """Paths a container can read from its volumes: exact files for Secret / ConfigMap items
    (also in projected volumes), "<dir>/" for volumes whose files are not listed."""
    volumes = {_as_dict(v).get("name"): _as_dict(v) for v in _as_list(spec.get("volumes"))}
    files: set[str] = set()
    for mount in _as_list(container.get("volumeMounts")):
        mount = _as_dict(mount)
        volume = volumes.get(mount.get("name"))
        if volume is None:
            continue
        root = str(mount.get("mountPath", "")).rstrip("/")
        sources = [_as_dict(volume.get("secret")), _as_dict(volume.get("configMap"))]
        sources += [
            _as_dict(_as_dict(s).get(kind))
            for s in _as_list(_as_dict(volume.get("projected")).get("sources"))
            for kind in ("secret", "configMap")
        ]
        listed = [str(_as_dict(i).get("path")) for source in sources if source for i in _as_list(source.get("items"))]
        whole = any(source and not source.get("items") for source in sources) or not any(sources)
        sub_path = mount.get("subPath")
        if sub_path:
            if sub_path in listed or whole:
                files.add(root)
            continue
        files.update(f"{root}/{p}" for p in listed)
        if whole:
            files.add(root + "/")
    return files


_CONTAINER_LISTS = (
    ("initContainers", "init container"),
    ("containers", "container"),
    ("ephemeralContainers", "ephemeral container"),
)

# Pods that prometheus-operator creates for its workload custom resources: the
# selector labels it puts on them and the named container ports they expose.
_OPERATOR_PODS: dict[tuple[str, str], tuple[tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    ("monitoring.coreos.com", "Prometheus"): (
        (
            ("app.kubernetes.io/name", "prometheus"),
            ("operator.prometheus.io/name", "{name}"),
            ("operator.prometheus.io/shard", "0"),
            ("prometheus", "{name}"),
        ),
        ("web", "reloader-web"),
    ),
    ("monitoring.coreos.com", "PrometheusAgent"): (
        (
            ("app.kubernetes.io/name", "prometheus-agent"),
            ("operator.prometheus.io/name", "{name}"),
            ("operator.prometheus.io/shard", "0"),
        ),
        ("web", "reloader-web"),
    ),
    ("monitoring.coreos.com", "Alertmanager"): (
        (("app.kubernetes.io/name", "alertmanager"), ("alertmanager", "{name}")),
        ("web", "mesh-tcp", "mesh-udp", "reloader-web"),
    ),
    ("monitoring.coreos.com", "ThanosRuler"): (
        (("app.kubernetes.io/name", "thanos-ruler"), ("thanos-ruler", "{name}")),
        ("web", "grpc", "reloader-web"),
    ),
}
_OPERATOR_COMMON_LABELS = (
    ("app.kubernetes.io/managed-by", "prometheus-operator"),
    ("app.kubernetes.io/instance", "{name}"),
)


@dataclass
class _PodTemplate:
    owner: str  # ident of the workload
    item: Item | None  # None for pre-existing pods from the cluster facts
    namespace: str
    labels: dict[str, str]
    spec: dict[str, Any] | None  # None for pods synthesized from operator custom resources
    port_names: dict[str, set[int]]  # named container ports -> numbers
    port_numbers: set[int]
    own_claims: frozenset[str]  # StatefulSet volumeClaimTemplate names


@dataclass
class _Service:
    ident: str
    namespace: str
    name: str
    labels: dict[str, str]
    selector: dict[str, str]
    ports: list[dict[str, Any]]


@dataclass
class _Index:
    namespaces: set[str] = field(default_factory=set)
    secrets: dict[tuple[str, str], set[str] | None] = field(default_factory=dict)  # None: keys unknown
    config_maps: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    pvcs: set[tuple[str, str]] = field(default_factory=set)
    pvs: set[str] = field(default_factory=set)
    storage_classes: set[str] = field(default_factory=set)
    service_accounts: set[tuple[str, str]] = field(default_factory=set)
    roles: set[tuple[str, str]] = field(default_factory=set)
    cluster_roles: set[str] = field(default_factory=set)
    templates: list[_PodTemplate] = field(default_factory=list)
    services: list[_Service] = field(default_factory=list)
    claim_templates: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # ns -> (sts, template)
    # Secrets that a kube-webhook-certgen Job creates at install: (ns, name) -> (source, keys)
    generated_secrets: dict[tuple[str, str], tuple[str, set[str]]] = field(default_factory=dict)


def _container_ports(spec: Mapping[str, Any]) -> tuple[dict[str, set[int]], set[int]]:
    names: dict[str, set[int]] = {}
    numbers: set[int] = set()
    for list_key in ("containers", "initContainers"):
        for container in _as_list(spec.get(list_key)):
            for port in _as_list(_as_dict(container).get("ports")):
                port = _as_dict(port)
                number = port.get("containerPort")
                if isinstance(number, int):
                    numbers.add(number)
                name = port.get("name")
                if isinstance(name, str) and name:
                    names.setdefault(name, set())
                    if isinstance(number, int):
                        names[name].add(number)
    return names, numbers


def _pod_template(obj: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, Any]] | None:
    template = pod_template_of(obj)
    if template is None:
        return None
    return _str_map(_meta(template).get("labels")), _as_dict(template.get("spec"))


def _secret_keys(obj: Mapping[str, Any]) -> set[str]:
    keys = set(_as_dict(obj.get("data"))) | set(_as_dict(obj.get("stringData")))
    if obj.get("type") == "kubernetes.io/service-account-token":
        keys |= {"token", "ca.crt", "namespace"}  # filled in by the token controller
    return {str(k) for k in keys}


def _build_index(items: Sequence[Item], facts: ClusterFacts, scopes: Mapping[tuple[str, str], bool]) -> _Index:
    index = _Index()
    index.namespaces = set(_BUILTIN_NAMESPACES) | set(facts.namespaces)
    index.storage_classes = set(facts.storage_classes)
    index.cluster_roles = set(facts.cluster_roles)
    for entry in facts.secrets:
        ns, _, name = entry.partition("/")
        index.secrets[(ns, name)] = None
    for entry in facts.service_accounts:
        ns, _, name = entry.partition("/")
        index.service_accounts.add((ns, name))
    for entry in facts.persistent_volume_claims:
        ns, _, name = entry.partition("/")
        index.pvcs.add((ns, name))
    for entry in sorted(facts.pod_labels):
        ns, _, text = entry.partition("/")
        labels = dict(pair.split("=", 1) for pair in text.split(",") if "=" in pair)
        index.templates.append(
            _PodTemplate(f"pre-existing pod {entry}", None, ns, labels, None, {}, set(), frozenset())
        )
    # The API server's own Service exists in every cluster.
    index.services.append(
        _Service(
            "Service/default/kubernetes",
            "default",
            "kubernetes",
            {"component": "apiserver", "provider": "kubernetes"},
            {},
            [{"name": "https", "port": 443, "targetPort": 6443}],
        )
    )

    for item in items:
        obj = item.obj
        group, kind = _gk(obj)
        ns = _namespace(obj) or ""
        name = _name(obj)
        key = (ns, name)
        if (group, kind) == ("", "Namespace"):
            index.namespaces.add(name)
        elif (group, kind) == ("", "Secret"):
            index.secrets[key] = _secret_keys(obj)
        elif (group, kind) == ("", "ConfigMap"):
            keys = set(_as_dict(obj.get("data"))) | set(_as_dict(obj.get("binaryData")))
            index.config_maps[key] = {str(k) for k in keys}
        elif (group, kind) == ("", "PersistentVolumeClaim"):
            index.pvcs.add(key)
        elif (group, kind) == ("", "PersistentVolume"):
            index.pvs.add(name)
        elif (group, kind) == ("storage.k8s.io", "StorageClass"):
            index.storage_classes.add(name)
        elif (group, kind) == ("", "ServiceAccount"):
            index.service_accounts.add(key)
        elif (group, kind) == ("rbac.authorization.k8s.io", "Role"):
            index.roles.add(key)
        elif (group, kind) == ("rbac.authorization.k8s.io", "ClusterRole"):
            index.cluster_roles.add(name)
        elif (group, kind) == ("", "Service"):
            spec = _as_dict(obj.get("spec"))
            selector = _str_map(spec.get("selector")) if spec.get("type") != "ExternalName" else {}
            index.services.append(
                _Service(
                    _ident(obj, True),
                    ns,
                    name,
                    _str_map(_meta(obj).get("labels")),
                    selector,
                    [_as_dict(p) for p in _as_list(spec.get("ports"))],
                )
            )
        elif (group, kind) == ("apps", "Deployment") and any(
            str(arg).startswith("--kubelet-service=") for arg in _deployment_args(obj)
        ):
            # prometheus-operator creates and maintains the kubelet Service it is told about.
            for arg in _deployment_args(obj):
                if str(arg).startswith("--kubelet-service="):
                    svc_ns, _, svc_name = str(arg).split("=", 1)[1].partition("/")
                    index.services.append(
                        _Service(
                            f"Service/{svc_ns}/{svc_name}",
                            svc_ns,
                            svc_name,
                            {
                                "app.kubernetes.io/name": "kubelet",
                                "app.kubernetes.io/managed-by": "prometheus-operator",
                                "k8s-app": "kubelet",
                            },
                            {},
                            [
                                {"name": n, "port": p}
                                for n, p in (("https-metrics", 10250), ("http-metrics", 10255), ("cadvisor", 4194))
                            ],
                        )
                    )

        if (group, kind) == ("batch", "Job"):
            for secret_key in _certgen_secrets(obj, ns):
                index.generated_secrets[secret_key] = (item.source, set(_CERTGEN_KEYS))
        if (group, kind) == ("apps", "Deployment"):
            for secret_key in _cert_rotation_secrets(obj, ns):
                index.generated_secrets[secret_key] = (item.source, set(_ROTATED_CERT_KEYS))

        template = _pod_template(obj)
        if template is not None:
            labels, spec = template
            names, numbers = _container_ports(spec)
            own_claims: frozenset[str] = frozenset()
            if (group, kind) == ("apps", "StatefulSet"):
                claim_names = [
                    _name(_as_dict(t)) for t in _as_list(_as_dict(obj.get("spec")).get("volumeClaimTemplates"))
                ]
                own_claims = frozenset(claim_names)
                index.claim_templates.setdefault(ns, []).extend((name, claim) for claim in claim_names)
            index.templates.append(_PodTemplate(_ident(obj, True), item, ns, labels, spec, names, numbers, own_claims))
        operator = _OPERATOR_PODS.get((group, kind))
        if operator is not None:
            selector_labels, ports = operator
            labels = {k: v.format(name=name) for k, v in (*selector_labels, *_OPERATOR_COMMON_LABELS)}
            labels.update(_str_map(_as_dict(_as_dict(obj.get("spec")).get("podMetadata")).get("labels")))
            index.templates.append(
                _PodTemplate(
                    f"{_ident(obj, True)} (operator-managed pods)",
                    item,
                    ns,
                    labels,
                    None,
                    {port: set() for port in ports},
                    set(),
                    frozenset(),
                )
            )
    # Kubernetes publishes the cluster's root CA as ConfigMap kube-root-ca.crt (key ca.crt)
    # in every namespace; projected ServiceAccount token volumes reference it.
    for ns in index.namespaces:
        index.config_maps.setdefault((ns, "kube-root-ca.crt"), {"ca.crt"})
    return index


_CERTGEN_KEYS = ("ca", "cert", "key")


def _certgen_secrets(job: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    """(namespace, name) of the Secrets a kube-webhook-certgen `create` Job writes."""
    found = []
    spec = _as_dict(_as_dict(_as_dict(job.get("spec")).get("template")).get("spec"))
    for container in _as_list(spec.get("containers")):
        container = _as_dict(container)
        args = [str(a) for a in _as_list(container.get("args"))]
        if "kube-webhook-certgen" not in str(container.get("image", "")) or "create" not in args:
            continue
        options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if options.get("secret-name"):
            found.append((options.get("namespace") or namespace, options["secret-name"]))
    return found


_ROTATED_CERT_KEYS = ("ca.crt", "tls.crt", "tls.key")


def _cert_rotation_secrets(deployment: Mapping[str, Any], namespace: str) -> list[tuple[str, str]]:
    """(namespace, name) of the certificate Secret a KEDA operator writes itself when it runs with
    `--enable-cert-rotation=true --cert-secret-name=<name>` (the chart's default, no cert-manager)."""
    args = [str(a) for a in _deployment_args(deployment)]
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    if options.get("enable-cert-rotation") == "true" and options.get("cert-secret-name"):
        return [(namespace, options["cert-secret-name"])]
    return []


def _deployment_args(obj: Mapping[str, Any]) -> list[Any]:
    spec = _as_dict(_as_dict(_as_dict(obj.get("spec")).get("template")).get("spec"))
    args: list[Any] = []
    for container in _as_list(spec.get("containers")):
        args.extend(_as_list(_as_dict(container).get("args")))
    return args


def _has_keys(keys: set[str] | None) -> str:
    if keys is None:
        return "unknown keys"
    return ", ".join(sorted(keys)) if keys else "no keys"


class _Checker:
    def __init__(self, items: Sequence[Item], facts: ClusterFacts) -> None:
        self.items = items
        self.facts = facts
        self.scopes = _crd_scopes(item.obj for item in items)
        self.index = _build_index(items, facts, self.scopes)
        self.problems: list[Problem] = []

    def add(self, rule: str, item: Item, ident: str, message: str) -> None:
        self.problems.append(Problem(rule, item.source, ident, message))

    def about(self, item: Item, ident: str) -> Callable[[str, str], None]:
        """`add` for the problems of one object: `add(rule, message)`."""
        return lambda rule, message: self.add(rule, item, ident, message)

    # ----- namespaces and duplicates

    def check_namespaces_and_duplicates(self) -> None:
        seen: dict[tuple[str, str, str, str], Item] = {}
        for item in self.items:
            obj = item.obj
            namespaced = _namespaced(obj, self.scopes)
            ident = _ident(obj, namespaced)
            add = self.about(item, ident)
            ns = _namespace(obj)
            if namespaced is True and ns is None:
                add("namespace", f"{ident} is namespaced but has no metadata.namespace")
            elif namespaced is not False and ns is not None and ns not in self.index.namespaces:
                add(
                    "namespace",
                    f"{ident} is in namespace '{ns}', which is neither declared in the stack (kind Namespace) "
                    "nor listed as pre-existing in the cluster facts",
                )
            group, kind = _gk(obj)
            key = (group, kind, (ns or "") if namespaced is not False else "", _name(obj))
            first = seen.get(key)
            if first is None:
                seen[key] = item
            else:
                add("duplicate", f"{ident} is declared twice: by {first.source} and by {item.source}")

    # ----- pod templates

    def _secret(self, item: Item, ident: str, ns: str, name: Any, where: str, key: Any | None) -> None:
        table: Mapping[tuple[str, str], set[str] | None] = self.index.secrets
        generated = self.index.generated_secrets.get((ns, name)) if isinstance(name, str) else None
        if generated is not None and generated[0] == item.source and (ns, name) not in table:
            table = ChainMap({(ns, name): generated[1]}, self.index.secrets)
        self._lookup("secret-ref", "Secret", table, item, ident, ns, name, where, key, in_facts=True)

    def _config_map(self, item: Item, ident: str, ns: str, name: Any, where: str, key: Any | None) -> None:
        self._lookup(
            "configmap-ref", "ConfigMap", self.index.config_maps, item, ident, ns, name, where, key, in_facts=False
        )

    def _lookup(
        self,
        rule: str,
        kind: str,
        table: Mapping[tuple[str, str], set[str] | None],
        item: Item,
        ident: str,
        ns: str,
        name: Any,
        where: str,
        key: Any | None,
        *,
        in_facts: bool,
    ) -> None:
        add = self.about(item, ident)
        if not isinstance(name, str) or not name:
            add(rule, f"{ident} {where} references a {kind} without a name")
            return
        if (ns, name) not in table:
            elsewhere = "in the stack or in the cluster facts" if in_facts else "in the stack"
            add(rule, f"{ident} {where} references {kind} {ns}/{name}, which is not declared {elsewhere}")
            return
        keys = table[(ns, name)]
        if key is not None and keys is not None and str(key) not in keys:
            add(
                rule,
                f"{ident} {where} references key '{key}' that {kind} {ns}/{name} does not have "
                f"(it has: {_has_keys(keys)})",
            )

    def check_pod_templates(self) -> None:
        for template in self.index.templates:
            if template.spec is not None and template.item is not None:
                self._check_pod_spec(template.item, template)

    def _check_pod_spec(self, item: Item, template: _PodTemplate) -> None:
        spec = template.spec or {}
        ident = template.owner
        add = self.about(item, ident)
        ns = template.namespace
        for list_key, label in _CONTAINER_LISTS:
            for container in _as_list(spec.get(list_key)):
                container = _as_dict(container)
                where = f"{label} '{container.get('name', '?')}'"
                for env in _as_list(container.get("env")):
                    env = _as_dict(env)
                    value_from = _as_dict(env.get("valueFrom"))
                    env_where = f"{where} env {env.get('name', '?')}"
                    for ref_key, check in (("secretKeyRef", self._secret), ("configMapKeyRef", self._config_map)):
                        ref = _as_dict(value_from.get(ref_key))
                        if ref and ref.get("optional") is not True:
                            check(item, ident, ns, ref.get("name"), env_where, ref.get("key"))
                self._file_commands(item, ident, container, spec, where)
                for env_from in _as_list(container.get("envFrom")):
                    for ref_key, check in (("secretRef", self._secret), ("configMapRef", self._config_map)):
                        ref = _as_dict(_as_dict(env_from).get(ref_key))
                        if ref and ref.get("optional") is not True:
                            check(item, ident, ns, ref.get("name"), f"{where} envFrom", None)
        for volume in _as_list(spec.get("volumes")):
            volume = _as_dict(volume)
            where = f"volume '{volume.get('name', '?')}'"
            # The volume's own secret/configMap, then those of its projected sources.
            sources = [(volume, where, "secretName")] + [
                (_as_dict(source), f"{where} projected source", "name")
                for source in _as_list(_as_dict(volume.get("projected")).get("sources"))
            ]
            for source, at, secret_name in sources:
                for kind, ref_key, name_key in (("secret", "secret", secret_name), ("configmap", "configMap", "name")):
                    ref = _as_dict(source.get(ref_key))
                    if ref and ref.get("optional") is not True:
                        self._secret_or_cm_volume(item, ident, ns, kind, ref.get(name_key), ref, at)
            claim = _as_dict(volume.get("persistentVolumeClaim"))
            if claim:
                self._claim(item, ident, ns, claim.get("claimName"), where, template)
            ephemeral = _as_dict(_as_dict(_as_dict(volume.get("ephemeral")).get("volumeClaimTemplate")).get("spec"))
            if ephemeral:
                self._storage_class(item, ident, ephemeral.get("storageClassName"), f"{ident} {where} ephemeral claim")
        for pull_secret in _as_list(spec.get("imagePullSecrets")):
            self._secret(item, ident, ns, _as_dict(pull_secret).get("name"), "imagePullSecrets", None)
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        if account != "default" and (ns, account) not in self.index.service_accounts:
            add(
                "service-account",
                f"{ident} serviceAccountName references ServiceAccount {ns}/{account}, "
                "which is not declared in the stack or in the cluster facts",
            )

    def _file_commands(
        self, item: Item, ident: str, container: Mapping[str, Any], spec: Mapping[str, Any], where: str
    ) -> None:
        """Airflow's `<OPTION>_CMD=cat <file>`: the file must come from a volume the container mounts
        (unless `<OPTION>` itself is set: Airflow reads it first and never runs the command)."""
        add = self.about(item, ident)
        env = [_as_dict(e) for e in _as_list(container.get("env"))]
        plain = {str(e.get("name", "")) for e in env if "value" in e or "valueFrom" in e}
        commands = [
            (e.get("name"), str(e.get("value") or ""))
            for e in env
            if str(e.get("name", "")).endswith("_CMD") and str(e.get("name")).removesuffix("_CMD") not in plain
        ]
        if not commands:
            return
        files = _mounted_files(container, spec)
        for name, command in commands:
            parts = command.split()
            if len(parts) != 2 or parts[0] != "cat" or not parts[1].startswith("/"):
                continue
            path = parts[1]
            if not any(path == f or (f.endswith("/") and path.startswith(f)) for f in files):
                add(
                    "file-command",
                    f"{ident} {where} env {name} reads {path}, which no volume mount of the container provides",
                )

    def _secret_or_cm_volume(
        self, item: Item, ident: str, ns: str, which: str, name: Any, source: Mapping[str, Any], where: str
    ) -> None:
        check = self._secret if which == "secret" else self._config_map
        before = len(self.problems)
        check(item, ident, ns, name, where, None)
        if len(self.problems) != before:
            return
        for entry in _as_list(source.get("items")):
            key = _as_dict(entry).get("key")
            if key is not None:
                check(item, ident, ns, name, f"{where} item", key)

    def _claim(self, item: Item, ident: str, ns: str, claim: Any, where: str, template: _PodTemplate) -> None:
        add = self.about(item, ident)
        if not isinstance(claim, str) or not claim:
            add("pvc-ref", f"{ident} {where} references a PersistentVolumeClaim without a name")
            return
        if (ns, claim) in self.index.pvcs or claim in template.own_claims:
            return
        for sts, claim_template in self.index.claim_templates.get(ns, []):
            if re.fullmatch(rf"{re.escape(claim_template)}-{re.escape(sts)}-\d+", claim):
                return
        add(
            "pvc-ref",
            f"{ident} {where} references PersistentVolumeClaim {ns}/{claim}, which is not declared in the stack "
            "(nor produced by a StatefulSet volumeClaimTemplate, nor listed in cluster.persistentVolumeClaims)",
        )

    # ----- storage

    def _storage_class(self, item: Item, ident: str, storage_class: Any, where: str) -> None:
        add = self.about(item, ident)
        if not isinstance(storage_class, str) or not storage_class:
            return
        if storage_class not in self.index.storage_classes:
            known = ", ".join(sorted(self.index.storage_classes)) or "none"
            add(
                "storage-class",
                f"{where} uses storageClassName '{storage_class}', which is not a StorageClass declared in the stack "
                f"or in the cluster facts (known: {known})",
            )

    def _of_kind(self, *kinds: tuple[str, str]) -> Iterator[Item]:
        """The items of these (API group, kind)s, in their order."""
        return (item for item in self.items if _gk(item.obj) in kinds)

    def check_storage(self) -> None:
        for item in self.items:
            obj = item.obj
            gk = _gk(obj)
            ident = _ident(obj, _namespaced(obj, self.scopes))
            add = self.about(item, ident)
            spec = _as_dict(obj.get("spec"))
            if gk == ("", "PersistentVolumeClaim"):
                self._storage_class(item, ident, spec.get("storageClassName"), ident)
                volume = spec.get("volumeName")
                if isinstance(volume, str) and volume and volume not in self.index.pvs:
                    add(
                        "pvc-ref",
                        f"{ident} volumeName references PersistentVolume {volume}, which is not declared in the stack",
                    )
                elif isinstance(volume, str) and volume:
                    self._binding(item, ident, spec, volume)
            elif gk == ("", "PersistentVolume"):
                self._storage_class(item, ident, spec.get("storageClassName"), ident)
            elif gk == ("apps", "StatefulSet"):
                for claim in _as_list(spec.get("volumeClaimTemplates")):
                    claim = _as_dict(claim)
                    self._storage_class(
                        item,
                        ident,
                        _as_dict(claim.get("spec")).get("storageClassName"),
                        f"{ident} volumeClaimTemplate '{_name(claim)}'",
                    )

    def _binding(self, item: Item, ident: str, claim: Mapping[str, Any], volume: str) -> None:
        """A claim bound by name to a volume must fit it, or it stays Pending forever."""
        from ...core.reader import quantity_value

        add = self.about(item, ident)

        pv = next(
            (i.obj for i in self.items if _gk(i.obj) == ("", "PersistentVolume") and _name(i.obj) == volume), None
        )
        if pv is None:
            return
        pv_spec = _as_dict(pv.get("spec"))
        pv_class, claim_class = pv_spec.get("storageClassName") or "", claim.get("storageClassName") or ""
        if pv_class != claim_class:
            add(
                "pv-binding",
                f"{ident} has storageClassName '{claim_class}' but its PersistentVolume {volume} has '{pv_class}'",
            )
        missing = [m for m in _as_list(claim.get("accessModes")) if m not in _as_list(pv_spec.get("accessModes"))]
        if missing:
            add(
                "pv-binding",
                f"{ident} asks for access modes {', '.join(map(str, missing))} that PersistentVolume {volume} "
                f"does not offer (it has: {', '.join(map(str, _as_list(pv_spec.get('accessModes'))))})",
            )
        wanted = _as_dict(_as_dict(claim.get("resources")).get("requests")).get("storage")
        offered = _as_dict(pv_spec.get("capacity")).get("storage")
        try:
            too_small = wanted is not None and (
                offered is None or quantity_value(str(offered)) < quantity_value(str(wanted))
            )
        except ValueError:
            too_small = False
        if too_small:
            add("pv-binding", f"{ident} requests {wanted} but PersistentVolume {volume} has a capacity of {offered}")
        claim_ref = _as_dict(pv_spec.get("claimRef"))
        if claim_ref and (
            claim_ref.get("name") != _name(item.obj) or claim_ref.get("namespace") != _namespace(item.obj)
        ):
            add(
                "pv-binding",
                f"{ident} names PersistentVolume {volume}, which is reserved for claim "
                f"{claim_ref.get('namespace')}/{claim_ref.get('name')}",
            )

    # ----- RBAC

    def check_rbac(self) -> None:
        for item in self._of_kind(
            ("rbac.authorization.k8s.io", "RoleBinding"), ("rbac.authorization.k8s.io", "ClusterRoleBinding")
        ):
            obj = item.obj
            gk = _gk(obj)
            cluster = gk[1] == "ClusterRoleBinding"
            ident = _ident(obj, not cluster)
            add = self.about(item, ident)
            binding_ns = None if cluster else _namespace(obj)
            for subject in _as_list(obj.get("subjects")):
                subject = _as_dict(subject)
                if subject.get("kind") != "ServiceAccount":
                    continue
                name = subject.get("name")
                ns = subject.get("namespace") or binding_ns
                if not ns:
                    add(
                        "rbac-subject",
                        f"{ident} subject ServiceAccount '{name}' has no namespace (required in a ClusterRoleBinding)",
                    )
                    continue
                exists = (
                    (ns, name) in self.index.service_accounts
                    or (name == "default" and ns in self.index.namespaces)
                    or (ns, name) in _BUILTIN_SERVICE_ACCOUNTS
                )
                if not exists:
                    add(
                        "rbac-subject",
                        f"{ident} subject references ServiceAccount {ns}/{name}, "
                        "which is not declared in the stack or in the cluster facts",
                    )
            role_ref = _as_dict(obj.get("roleRef"))
            ref_kind, ref_name = role_ref.get("kind"), role_ref.get("name")
            if ref_kind == "Role":
                if cluster:
                    add(
                        "rbac-roleref",
                        f"{ident} roleRef references Role {ref_name}, "
                        "but a ClusterRoleBinding can only reference a ClusterRole",
                    )
                elif (binding_ns or "", ref_name) not in self.index.roles and (
                    (binding_ns or "", ref_name) not in _BUILTIN_ROLES
                ):
                    add(
                        "rbac-roleref",
                        f"{ident} roleRef references Role {binding_ns}/{ref_name}, which is not declared in the stack",
                    )
            elif ref_kind == "ClusterRole":
                name = str(ref_name)
                builtin = name in _BUILTIN_CLUSTER_ROLES or name.startswith("system:")
                if not builtin and name not in self.index.cluster_roles:
                    add(
                        "rbac-roleref",
                        f"{ident} roleRef references ClusterRole {name}, which is not declared in the stack, "
                        "in the cluster facts, or a Kubernetes built-in",
                    )
            else:
                add("rbac-roleref", f"{ident} roleRef has kind {ref_kind!r}; expected Role or ClusterRole")

    # ----- Services

    def _selected(self, service: _Service) -> list[_PodTemplate]:
        return [
            t
            for t in self.index.templates
            if t.namespace == service.namespace and all(t.labels.get(k) == v for k, v in service.selector.items())
        ]

    def check_services(self) -> None:
        services = {(s.namespace, s.name): s for s in self.index.services}
        for item in self._of_kind(("", "Service")):
            obj = item.obj
            service = services.get((_namespace(obj) or "", _name(obj)))
            if service is None or not service.selector:
                continue
            ident = service.ident
            add = self.about(item, ident)
            selected = self._selected(service)
            if not selected:
                count = sum(1 for t in self.index.templates if t.namespace == service.namespace)
                add(
                    "service-selector",
                    f"{ident} selector {{{_fmt_labels(service.selector)}}} matches no pod template in namespace "
                    f"{service.namespace} ({count} pod templates there, none carries all these labels)",
                )
                continue
            for port in service.ports:
                target = port.get("targetPort")
                if not isinstance(target, str):
                    continue
                if any(target in t.port_names for t in selected):
                    continue
                have = "; ".join(f"{t.owner} names: {', '.join(sorted(t.port_names)) or 'none'}" for t in selected)
                add(
                    "service-selector",
                    f"{ident} port '{port.get('name', port.get('port'))}' targetPort '{target}' is not a named "
                    f"containerPort of any selected pod template ({have})",
                )

    # ----- ServiceMonitors

    def check_ingresses(self) -> None:
        classes = set(self.facts.ingress_classes) | {
            _name(i.obj) for i in self.items if _gk(i.obj) == ("networking.k8s.io", "IngressClass")
        }
        services = {(_namespace(i.obj), _name(i.obj)): i.obj for i in self._of_kind(("", "Service"))}
        for item in self._of_kind(("networking.k8s.io", "Ingress")):
            obj = item.obj
            ident = _ident(obj, True)
            add = self.about(item, ident)
            ns = _namespace(obj) or ""
            spec = _as_dict(obj.get("spec"))
            wanted = spec.get("ingressClassName")
            if isinstance(wanted, str) and wanted not in classes:
                known = ", ".join(sorted(classes)) or "none"
                add(
                    "ingress",
                    f"{ident} uses ingressClassName '{wanted}', which is not an IngressClass declared in the stack "
                    f"or in cluster.ingressClasses (known: {known})",
                )
            notes = _as_dict(_meta(obj).get("annotations"))
            issued = any(k in notes for k in ("cert-manager.io/cluster-issuer", "cert-manager.io/issuer"))
            for tls in _as_list(spec.get("tls")):
                secret = _as_dict(tls).get("secretName")
                if isinstance(secret, str) and secret and (ns, secret) not in self.index.secrets and not issued:
                    add(
                        "ingress",
                        f"{ident} uses TLS Secret {ns}/{secret}, which is not declared in the stack or in "
                        "cluster.secrets (and no cert-manager issuer annotation would create it)",
                    )
            backends = [_as_dict(spec.get("defaultBackend"))]
            for rule in _as_list(spec.get("rules")):
                for path in _as_list(_as_dict(_as_dict(rule).get("http")).get("paths")):
                    backends.append(_as_dict(_as_dict(path).get("backend")))
            for backend in backends:
                svc = _as_dict(backend.get("service"))
                if not svc:
                    continue
                target = services.get((ns, str(svc.get("name"))))
                if target is None:
                    add("ingress", f"{ident} routes to Service {ns}/{svc.get('name')}, which does not exist")
                    continue
                port = _as_dict(svc.get("port"))
                ports = _as_list(_as_dict(target.get("spec")).get("ports"))
                names = {_as_dict(p).get("name") for p in ports}
                numbers = {_as_dict(p).get("port") for p in ports}
                if ("name" in port and port["name"] not in names) or (
                    "number" in port and port["number"] not in numbers
                ):
                    add(
                        "ingress",
                        f"{ident} routes to port {port.get('name', port.get('number'))} of Service "
                        f"{ns}/{svc.get('name')}, which has no such port",
                    )

    def check_service_monitors(self) -> None:
        for item in self._of_kind(("monitoring.coreos.com", "ServiceMonitor")):
            obj = item.obj
            ident = _ident(obj, True)
            add = self.about(item, ident)
            spec = _as_dict(obj.get("spec"))
            own_ns = _namespace(obj) or ""
            ns_selector = _as_dict(spec.get("namespaceSelector"))
            if ns_selector.get("any") is True:
                namespaces: list[str] | None = None
                scope = "any namespace"
            else:
                names = [str(n) for n in _as_list(ns_selector.get("matchNames"))]
                namespaces = names or [own_ns]
                scope = f"namespace(s) {', '.join(namespaces)}"
            selector = _as_dict(spec.get("selector"))
            matched = [
                s
                for s in self.index.services
                if (namespaces is None or s.namespace in namespaces) and _selector_matches(selector, s.labels)
            ]
            if not matched:
                add("servicemonitor", f"{ident} selector {{{_fmt_selector(selector)}}} matches no Service in {scope}")
                continue
            for number, endpoint in enumerate(_as_list(spec.get("endpoints"))):
                endpoint = _as_dict(endpoint)
                port = endpoint.get("port")
                if (
                    isinstance(port, str)
                    and port
                    and not any(any(p.get("name") == port for p in s.ports) for s in matched)
                ):
                    have = "; ".join(f"{s.ident} has: {_port_names(s)}" for s in matched)
                    add(
                        "servicemonitor",
                        f"{ident} endpoint {number} port '{port}' is not a named port of any selected Service ({have})",
                    )
                target = endpoint.get("targetPort")
                if target is not None and not self._target_port_exists(matched, target):
                    add(
                        "servicemonitor",
                        f"{ident} endpoint {number} targetPort {target!r} matches no targetPort of the selected "
                        "Services nor a containerPort of their pods",
                    )

    def _target_port_exists(self, services: list[_Service], target: Any) -> bool:
        for service in services:
            if any(p.get("targetPort") == target for p in service.ports):
                return True
            if not service.selector:
                continue
            for template in self._selected(service):
                if isinstance(target, str) and target in template.port_names:
                    return True
                if isinstance(target, int) and (
                    target in template.port_numbers or any(target in n for n in template.port_names.values())
                ):
                    return True
        return False


def _port_names(service: _Service) -> str:
    return ", ".join(str(p["name"]) for p in service.ports if p.get("name")) or "no named ports"


def _fmt_labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _fmt_selector(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(_str_map(selector.get("matchLabels")).items())]
    for expr in _as_list(selector.get("matchExpressions")):
        expr = _as_dict(expr)
        values = ",".join(str(v) for v in _as_list(expr.get("values")))
        parts.append(f"{expr.get('key')} {expr.get('operator')}" + (f" ({values})" if values else ""))
    return ", ".join(parts)


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    for key, value in _str_map(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in _as_list(selector.get("matchExpressions")):
        expr = _as_dict(expr)
        key = str(expr.get("key"))
        operator = expr.get("operator")
        values = {str(v) for v in _as_list(expr.get("values"))}
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            ok = False
        if not ok:
            return False
    return True


def reference_problems(items: list[Item], facts: ClusterFacts) -> list[Problem]:
    """Referential integrity across all objects of the stack (see module docstring)."""
    checker = _Checker(items, facts)
    checker.check_namespaces_and_duplicates()
    checker.check_pod_templates()
    checker.check_storage()
    checker.check_rbac()
    checker.check_services()
    checker.check_service_monitors()
    checker.check_ingresses()
    return checker.problems
