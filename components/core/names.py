"""What the Kubernetes API server refuses in names, labels, annotations, tolerations, paths and
host names, known offline: each rule once, mirroring the API server's own validation functions
(k8s.io/apimachinery/pkg/util/validation and pkg/apis/core/validation), called where the key
is parsed. Each raises a ConfigError naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from .reader import ConfigError, ConfigTypeError, matches

DNS1123_LABEL_MAX = 63
# The namespaces Kubernetes makes itself; the kube-* prefix is the system's too.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DNS1123_SUBDOMAIN_MAX = 253
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
# ValidateAnnotationsSize: all keys and values of one object's annotations together.
ANNOTATIONS_MAX_BYTES = 256 * 1024

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def is_dns1123_subdomain(value: Any) -> bool:
    return matches(_DNS1123_SUBDOMAIN, value) and len(value) <= DNS1123_SUBDOMAIN_MAX


def is_qualified_name(value: Any) -> bool:
    """IsQualifiedName: `[prefix/]name`, the prefix a DNS-1123 subdomain, the name at most 63 characters
    of letters, digits, '-', '_' and '.', starting and ending with a letter or digit."""
    if not isinstance(value, str):
        return False
    prefix, slash, name = value.rpartition("/")
    if slash and (not is_dns1123_subdomain(prefix) or "/" in prefix):
        return False
    return matches(_QUALIFIED_NAME, name) and len(name) <= QUALIFIED_NAME_MAX


def is_label_value(value: Any) -> bool:
    return matches(_LABEL_VALUE, value) and len(value) <= LABEL_VALUE_MAX


QUALIFIED_NAME_RULE = (
    "an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit (e.g. 'node-role.kubernetes.io/airflow', 'team')"
)
LABEL_VALUE_RULE = "empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def label_key(key: str, value: Any, what: str = "label key") -> str:
    if not is_qualified_name(value):
        raise ConfigError(key, value, f"not a Kubernetes {what}: expected {QUALIFIED_NAME_RULE}.")
    return str(value)


def label_value(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, value, "expected a string (quote numbers and booleans).")
    if not is_label_value(value):
        raise ConfigError(key, value, f"not a Kubernetes label value: expected {LABEL_VALUE_RULE}.")
    return value


def label_map(key: str, raw: Any) -> dict[str, str]:
    """A label map (labels, nodeSelector, selectors): qualified-name keys, label values."""
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, "expected an object of label keys to values.")
    return {label_key(f"{key}.{k}", k): label_value(f"{key}.{k}", v) for k, v in raw.items()}


def annotation_map(key: str, raw: Any) -> dict[str, str]:
    """An annotation map: qualified-name keys, string values, at most 256 KiB together."""
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, "expected an object of annotation keys to values.")
    out: dict[str, str] = {}
    for k, v in raw.items():
        label_key(f"{key}.{k}", k, "annotation key")
        if not isinstance(v, str):
            raise ConfigTypeError(f"{key}.{k}", v, "expected a string (quote numbers and booleans).")
        out[k] = v
    size = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    if size > ANNOTATIONS_MAX_BYTES:
        raise ConfigError(
            key, f"[{size} bytes]", f"annotations may hold at most {ANNOTATIONS_MAX_BYTES} bytes together (256 KiB)."
        )
    return out


def node_name(key: str, value: Any) -> str:
    """A node's name: a DNS-1123 subdomain (what `kubernetes.io/hostname` and nodeName hold)."""
    if not is_dns1123_subdomain(value):
        raise ConfigError(
            key,
            value,
            "no node can have this name: node names are DNS-1123 subdomains (lowercase letters, digits, '-' and "
            "'.', starting and ending with a letter or digit, at most 253 characters), as `kubectl get nodes` "
            "shows them.",
        )
    return str(value)


def toleration(key: str, operator: str, toleration_key: str | None, value: str | None) -> None:
    """ValidateTolerations: a key is a qualified name; no key needs operator Exists (it then matches
    every taint); with Equal the value is a label value."""
    if toleration_key:
        label_key(f"{key}.key", toleration_key, "toleration key")
    elif operator != "Exists":
        raise ConfigError(
            f"{key}.operator",
            operator,
            "a toleration without a key must have operator Exists (it then tolerates every taint); the API server "
            "refuses Equal without a key.",
            f"set {key}.key to the taint's key, or {key}.operator to Exists.",
        )
    if operator == "Equal" and value is not None and not is_label_value(value):
        raise ConfigError(f"{key}.value", value, f"not a valid toleration value: expected {LABEL_VALUE_RULE}.")


def sub_path(key: str, value: Any, *, inside: str = "its volume") -> str:
    """validateLocalDescendingPath: a relative path with no '..' element, so it stays inside the volume
    (or the repository) it names."""
    if not isinstance(value, str):
        raise ConfigError(key, value, "expected a string path.")
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts:
        raise ConfigError(
            key,
            value,
            f"expected a path inside {inside}: relative, without a '..' element (the API server refuses one that "
            "climbs out).",
        )
    return value


def no_look_alike(key: str, value: str, what: str = "host name") -> str:
    """Refuse a name with a character outside ASCII, naming it: a look-alike (homoglyph) of another name."""
    foreign = next((c for c in value if not c.isascii()), None)
    if foreign is not None:
        name = unicodedata.name(foreign, "an unnamed character")
        raise ConfigError(
            key,
            value,
            f"the {what} holds {foreign!r} (U+{ord(foreign):04X} {name}), not an ASCII character: a look-alike of "
            f"another {what}. Host names are ASCII; an internationalised name is written as its xn-- form.",
        )
    return value


def host_or_ip(key: str, value: str) -> str:
    """A host name (as `host_name`) or an IP address (an IPv6 one may be in brackets)."""
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        host_name(key, value)
    return value


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?")


def host_name(key: str, value: Any, *, wildcard: bool = False) -> str:
    """A DNS host name in ASCII: letters, digits and '-' in dot-separated labels of at most 63
    characters, at most 253 in all. A character outside ASCII is refused by name: a look-alike
    (a Cyrillic i for the Latin one) sends traffic, credentials and trust to another host; an
    internationalised name is written in its ASCII form (xn--...)."""
    if not isinstance(value, str):
        raise ConfigError(key, value, "expected a host name.")
    no_look_alike(key, value)
    host = value[2:] if wildcard and value.startswith("*.") else value
    parts = host.rstrip(".").split(".")
    if len(host) > DNS1123_SUBDOMAIN_MAX or not all(
        matches(_HOST_LABEL, part) and len(part) <= DNS1123_LABEL_MAX for part in parts
    ):
        raise ConfigError(
            key,
            value,
            "expected a DNS host name: labels of letters, digits and '-' (at most 63 characters each, not starting "
            "or ending with '-'), separated by dots, at most 253 characters.",
        )
    return value


_URL_HOST = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?:[^@/?#]*@)?(\[[^\]/]*\]|[^:/?#]*)")
_SCP_HOST = re.compile(r"[^@/\s]+@([^:/\s]+):")


def url_host(key: str, url: str) -> str:
    """The host of a URL (`scheme://[user@]host[:port]/...`, or git's `user@host:path`), checked as a
    host name (an IP address as it is); returns the URL."""
    match = _URL_HOST.match(url) or _SCP_HOST.match(url)
    host = match.group(1) if match else ""
    if host and not host.startswith("["):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            host_name(key, host)
    return url
