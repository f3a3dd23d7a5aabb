"""Credentials recognised by their shape: the one rule for values that must never be plain text.

A value is a credential, whatever key holds it, when it is (or contains):

- a PEM private key block (`-----BEGIN ... PRIVATE KEY-----`, RSA, EC, OpenSSH, PKCS#8, PGP);
- a token of a known shape: a JSON Web Token, an `Authorization: Bearer` value, a GitHub token
  (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), a Slack token (`xoxb-`, `xoxp-`, ...),
  an AWS access key id (`AKIA`/`ASIA`), a Google API key (`AIza`);
- a chat webhook URL, whose path is the credential: Slack (`hooks.slack.com/services/...`),
  Microsoft Teams (`*.webhook.office.com/webhookb2/...`), Discord (`discord.com/api/webhooks/...`);
- a kubeconfig (text or object) whose users carry credentials (token, client key, password);
- a URL with user information or a credential in its query (`url_credentials`).

`credential_in` finds the first one inside any JSON-like value (walked without recursion).
The stack edge applies it to every key that is not secret (components/platform/guards.py),
the invariants to every string of every Release's values (components/core/invariants.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Shape:
    """A kind of credential: what it is, and where such a credential belongs instead."""

    what: str
    belongs: str


PRIVATE_KEY = Shape(
    "a PEM private key block",
    "gitSshKey for the DAG repository; a task's key in teamSecrets, or in an Airflow connection in 'connections'",
)
TOKEN = Shape("a token", "gitToken for the DAG repository; anything else in 'connections' or 'teamSecrets'")
WEBHOOK = Shape(
    "a chat webhook URL (its path is the credential: anyone holding it can post)",
    "an Airflow connection in the secret key 'connections' (slackwebhook://, or http with the path in the password)",
)
KUBECONFIG = Shape(
    "a kubeconfig with credentials",
    "an Airflow kubernetes connection in the secret key 'connections' (kube_config in its extra)",
)
URL = Shape(
    "a URL with credentials",
    "'connections' for Airflow connections, 'databaseUrl' for the metadata database, 'logsConnection' for "
    "remote logs, 'gitToken' for the DAG repository",
)

_PEM = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
_TOKENS = (
    ("a JSON Web Token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("a bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}=*")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})")),
    ("a Slack token", re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{10,}")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
)
_WEBHOOKS = (
    ("a Slack webhook URL", re.compile(r"(?i)https?://hooks\.slack\.com/(?:services|workflows|triggers)/\S+")),
    (
        "a Microsoft Teams webhook URL",
        re.compile(r"(?i)https?://[a-z0-9.-]*\.?(?:webhook\.office\.com/webhookb2|outlook\.office\.com/webhook)/\S+"),
    ),
    ("a Discord webhook URL", re.compile(r"(?i)https?://(?:canary\.|ptb\.)?discord(?:app)?\.com/api/webhooks/\d+/\S+")),
)
_KUBECONFIG_TEXT = re.compile(r"(?m)^\s*\"?kind\"?\s*:\s*\"?Config\b")
_KUBECONFIG_USER_KEYS = ("token", "client-key-data", "client-key", "password", "auth-provider", "exec")

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s@?#]*)@")
_URL_SECRET_QUERY = re.compile(
    r"(?i)[?&](token|access_token|auth_token|password|passwd|pwd|secret|sig|signature|x-amz-signature"
    r"|x-amz-credential|api_key|apikey|key)=([^&#\s]+)"
)


def url_credentials(text: str) -> str | None:
    """What kind of credential a URL in `text` carries, or None. A user name alone is fine for
    SSH (`ssh://git@host/...`); over HTTP(S) it is where tokens go. Azure's blob and data-lake
    URLs (`wasb://container@account.blob.core.windows.net/...`, abfs likewise) name the
    container there: a credential only with a ':'."""
    for match in _URL_USERINFO.finditer(text):
        userinfo, scheme = match.group(2), match.group(1).lower()
        named_user_ok = scheme.startswith(("ssh", "git+ssh", "wasb", "abfs"))
        if ":" in userinfo or (userinfo and not named_user_ok):
            return "user information (a user name, password or token before '@')"
    query = _URL_SECRET_QUERY.search(text)
    if query:
        return f"a credential in its query ('{query.group(1)}=')"
    return None


def redact_url(text: str) -> str:
    """The URL with its user information and credential query values replaced."""
    text = _URL_USERINFO.sub(
        lambda m: f"{m.group(1)}[credentials]@" if url_credentials(m.group(0)) else m.group(0), text
    )
    return _URL_SECRET_QUERY.sub(lambda m: m.group(0).split("=")[0] + "=[credentials]", text)


@dataclass(frozen=True)
class Found:
    """A credential found inside a value: where (a suffix of the key path: `.a.b[0]`), and its shape."""

    where: str
    shape: Shape
    detail: str


def text_credential(text: str, *, urls: bool = True) -> Found | None:
    """The credential inside one text, or None (`urls=False`: not a URL's user information or
    query, for callers that report those with the URL redacted)."""
    if _PEM.search(text):
        return Found("", PRIVATE_KEY, PRIVATE_KEY.what)
    for detail, pattern in _WEBHOOKS:
        if pattern.search(text):
            return Found("", WEBHOOK, detail)
    for detail, pattern in _TOKENS:
        if pattern.search(text):
            return Found("", TOKEN, detail)
    if _KUBECONFIG_TEXT.search(text):
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = None
        if isinstance(parsed, Mapping) and kubeconfig_with_credentials(parsed):
            return Found("", KUBECONFIG, KUBECONFIG.what)
    if urls:
        kind = url_credentials(text)
        if kind:
            return Found("", URL, f"a URL carrying {kind}")
    return None


def kubeconfig_with_credentials(value: Mapping[str, Any]) -> bool:
    """A kubeconfig (`kind: Config`) with a user that carries a credential."""
    if value.get("kind") != "Config" or not isinstance(value.get("users"), list):
        return False
    for entry in value["users"]:
        user = entry.get("user") if isinstance(entry, Mapping) else None
        if isinstance(user, Mapping) and any(user.get(k) for k in _KUBECONFIG_USER_KEYS):
            return True
    return False


def credential_in(value: Any, *, urls: bool = True) -> Found | None:
    """The first credential inside a JSON-like value (its texts, and kubeconfigs written as objects)."""
    pending: list[tuple[Any, str]] = [(value, "")]
    while pending:
        item, where = pending.pop(0)
        if isinstance(item, str):
            found = text_credential(item, urls=urls)
            if found is not None:
                return Found(where, found.shape, found.detail)
        elif isinstance(item, Mapping):
            if kubeconfig_with_credentials(item):
                return Found(where, KUBECONFIG, KUBECONFIG.what)
            pending.extend((inner, f"{where}.{name}") for name, inner in item.items())
        elif isinstance(item, list | tuple):
            pending.extend((inner, f"{where}[{i}]") for i, inner in enumerate(item))
    return None
