"""Secrets by shape: a credential in any key that is not secret is refused, naming the key and the
secret key it belongs in, never the value (one rule: components/core/credentials.py).

Each shape is tried in a plain key and refused; its fixed twin, the same value in a secret key,
loads clean. The rule applies to every plain key, not to a list of them, and to every string of
a Release's values for component users (AirflowRelease's `extra_values`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from components.airflow.component import AirflowRelease
from components.core.credentials import credential_in
from components.core.reader import ConfigError
from components.platform.config import parse_stack
from tests.helpers import ROOT

CORPUS = ROOT / "tests" / "bad_configs"
AIRFLOW = {"dags": {"mode": "gitSync", "gitSync": {"repo": "https://github.com/example/dags.git"}}}
KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
    "users": [{"name": "ci", "user": {"token": "kube-token-0123456789"}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "ci"}}],
    "current-context": "c",
}
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "-----END RSA PRIVATE KEY-----\n"
)

# (id, value, the kind the message names, where the message says it belongs)
SHAPES: list[tuple[str, Any, str, str]] = [
    ("pem-rsa-private-key", PEM, "a PEM private key block", "gitSshKey"),
    (
        "pem-openssh-private-key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
        "a PEM private key block",
        "gitSshKey",
    ),
    (
        "pem-pkcs8-private-key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG9w0BBQ0wPDAbBgkqhkiG9w0BBQwwDgQI\n"
        "-----END ENCRYPTED PRIVATE KEY-----",
        "a PEM private key block",
        "gitSshKey",
    ),
    (
        "json-web-token",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "a JSON Web Token",
        "'connections'",
    ),
    ("bearer-token", "Authorization: Bearer 0123456789abcdefABCDEF", "a bearer token", "'connections'"),
    ("github-token", "ghp_" + "a1B2c3D4e5" * 4, "a GitHub token", "gitToken"),
    ("github-fine-grained-token", "github_pat_11ABCDEFG0" + "x" * 30, "a GitHub token", "gitToken"),
    ("slack-bot-token", "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx", "a Slack token", "'teamSecrets'"),
    ("aws-access-key-id", "AKIAIOSFODNN7EXAMPLE", "an AWS access key id", "'connections'"),
    (
        "slack-webhook",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
        "a Slack webhook URL",
        "slackwebhook://",
    ),
    (
        "teams-webhook",
        "https://contoso.webhook.office.com/webhookb2/0000-1111@2222-3333/IncomingWebhook/abcdef/4444",
        "a Microsoft Teams webhook URL",
        "slackwebhook://",
    ),
    (
        "discord-webhook",
        "https://discord.com/api/webhooks/123456789012345678/AbCdEf-GhIjKl_MnOpQr",
        "a Discord webhook URL",
        "slackwebhook://",
    ),
    ("kubeconfig-text", yaml.safe_dump(KUBECONFIG), "a kubeconfig with credentials", "kube_config"),
    ("kubeconfig-object", KUBECONFIG, "a kubeconfig with credentials", "kube_config"),
    ("url-with-password", "postgresql://etl:hunter2-pw@wh.internal:5432/dw", "user information", "databaseUrl"),
    ("url-with-token-query", "https://api.example.com/v1/data?token=0123456789abcdef", "'token='", "'connections'"),
]
IDS = [case[0] for case in SHAPES]


def parse(values: dict[str, Any], secret: set[str] | None = None):
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()}
    return parse_stack({"airflow": json.dumps(AIRFLOW), **encoded}, secret or set())


def refusal(values: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        parse(values)
    return err.value


def shown(value: Any) -> list[str]:
    """The parts of a value that must never appear in a message."""
    if isinstance(value, dict):
        return ["kube-token-0123456789"]
    return [line for line in str(value).splitlines() if len(line) >= 12 and "-----" not in line]


class TestEveryShapeInAPlainKey:
    @pytest.mark.parametrize(("name", "value", "what", "belongs"), SHAPES, ids=IDS)
    def test_a_plain_variable_holding_it_is_refused_naming_the_key_and_the_secret_key(self, name, value, what, belongs):
        err = refusal({"variables": {"alerts": value}})
        message = str(err)
        assert err.key == "variables.alerts"
        assert what in message and belongs in message
        assert "pulumi config set --secret variables" in message
        assert shown(value) and not any(part in message for part in shown(value))

    @pytest.mark.parametrize(("name", "value", "what", "belongs"), SHAPES, ids=IDS)
    def test_its_fixed_twin_the_same_value_in_secret_variables_loads_clean(self, name, value, what, belongs):
        stack = parse({"variables": {"alerts": value}}, {"variables"})
        assert "alerts" in stack.variables

    @pytest.mark.parametrize(("name", "value", "what", "belongs"), SHAPES, ids=IDS)
    def test_the_rule_recognises_it_on_its_own(self, name, value, what, belongs):
        found = credential_in(value)
        assert found is not None and what in found.detail


class TestEveryPlainKey:
    """The rule is applied to every key that is not secret, wherever the value sits in it."""

    WEBHOOK = SHAPES[IDS.index("slack-webhook")][1]
    PLACES = [
        (
            "alertmanager-receiver",
            {
                "monitoring": {
                    "mode": "install",
                    "install": {
                        "extraValues": {
                            "alertmanager": {"config": {"receivers": [{"slack_configs": [{"api_url": WEBHOOK}]}]}}
                        }
                    },
                }
            },
            "monitoring.install.extraValues.alertmanager.config.receivers[0].slack_configs[0].api_url",
        ),
        (
            "airflow-extra-values",
            {"airflow": {**AIRFLOW, "extraValues": {"env": [{"name": "ALERTS", "value": WEBHOOK}]}}},
            "airflow.extraValues.env[0].value",
        ),
        (
            "identity-annotation",
            {"identity": {"provider": "aws", "default": "arn:aws:iam::1:role/a", "annotations": {"hook": WEBHOOK}}},
            "identity.annotations.hook",
        ),
        ("task-image", {"taskImages": {"python": WEBHOOK}}, "taskImages.python"),
        ("nested-variable", {"variables": {"cfg": {"channels": [{"url": WEBHOOK}]}}}, "variables.cfg.channels[0].url"),
    ]

    @pytest.mark.parametrize(("name", "values", "key"), PLACES, ids=[p[0] for p in PLACES])
    def test_a_webhook_anywhere_in_a_plain_key_is_refused_naming_its_path(self, name, values, key):
        err = refusal(values)
        assert err.key == key
        assert "a Slack webhook URL" in str(err) and self.WEBHOOK not in str(err)

    def test_a_credential_under_a_key_the_parser_does_not_know_is_refused_as_a_credential_not_echoed(self):
        token = SHAPES[IDS.index("github-token")][1]
        err = refusal({"airflow": {**AIRFLOW, "unknownKey": token}})
        assert err.key == "airflow.unknownKey" and "a GitHub token" in str(err) and token not in str(err)

    def test_plain_keys_without_credentials_load_clean(self):
        known_hosts = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        stack = parse(
            {
                "variables": {
                    "docs": "https://hooks.slack.com/",  # the host alone is no webhook
                    "hosts": known_hosts,  # a public key
                    "ssh": "ssh://git@github.com/org/repo.git",  # a user name alone, over SSH
                    "arn": "arn:aws:iam::123456789012:role/airflow",
                    "jwt_like": "eyJ.not.a.token",
                },
                "identity": {"provider": "aws", "default": "arn:aws:iam::123456789012:role/airflow"},
            }
        )
        assert set(stack.variables) == {"docs", "hosts", "ssh", "arn", "jwt_like"}


class TestComponentValues:
    def test_a_token_in_airflow_release_extra_values_is_refused_naming_the_path(self):
        token = SHAPES[IDS.index("slack-bot-token")][1]
        with pytest.raises(ConfigError) as err:
            AirflowRelease.checked_args(
                {"settings": AIRFLOW, "extra_values": {"env": [{"name": "SLACK", "value": token}]}}
            )
        assert err.value.key == "extra_values.env[0].value"
        assert "a Slack token" in str(err.value) and token not in str(err.value)

    def test_its_fixed_twin_without_the_token_is_accepted(self):
        cfg, _, _ = AirflowRelease.checked_args(
            {"settings": AIRFLOW, "extra_values": {"env": [{"name": "X", "value": "1"}]}}
        )
        assert cfg.dags.mode == "gitSync"


class TestCorpusTwins:
    """The corpus files of this class (tests/bad_configs/credential-*.yaml), fixed, load clean."""

    @pytest.mark.parametrize(
        "name", ["credential-kubeconfig-with-token-in-variables", "credential-private-key-in-variables"]
    )
    def test_the_variable_set_as_a_secret_loads_clean(self, name):
        doc = yaml.safe_load((CORPUS / f"{name}.yaml").read_text())["config"]
        values = {k.split(":", 1)[1]: v for k, v in doc.items()}
        stack = parse(values, {"variables"})
        assert stack.variables

    def test_the_receiver_reading_its_webhook_from_a_file_loads_clean(self):
        doc = yaml.safe_load((CORPUS / "credential-slack-webhook-in-alertmanager-config.yaml").read_text())["config"]
        values = {k.split(":", 1)[1]: v for k, v in doc.items()}
        receiver = values["monitoring"]["install"]["extraValues"]["alertmanager"]["config"]["receivers"][0]
        receiver["slack_configs"] = [{"api_url_file": "/etc/alertmanager/secrets/slack/url"}]
        assert parse(values).monitoring.install is not None
