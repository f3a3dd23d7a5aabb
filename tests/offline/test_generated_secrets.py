"""The checker knows the Secret a kube-webhook-certgen Job creates at install
(components/offline/checks/references.py)."""

from __future__ import annotations

from typing import Any

from components.offline.checks import ClusterFacts, Item, reference_problems

NS = "monitoring"


def operator(secret: str = "kps-admission", key: str | None = None, source: str = "kps") -> Item:
    volume: dict[str, Any] = {"secretName": secret}
    if key is not None:
        volume["items"] = [{"key": key, "path": key}]
    return Item(
        source,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "kps-operator", "namespace": NS},
            "spec": {
                "selector": {"matchLabels": {"app": "op"}},
                "template": {
                    "metadata": {"labels": {"app": "op"}},
                    "spec": {
                        "containers": [{"name": "op", "image": "quay.io/prometheus-operator/prometheus-operator"}],
                        "volumes": [{"name": "tls-secret", "secret": volume}],
                    },
                },
            },
        },
    )


def certgen_job(
    args: list[str], image: str = "ghcr.io/jkroepke/kube-webhook-certgen:1.8.7", source: str = "kps"
) -> Item:
    return Item(
        source,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "kps-admission-create", "namespace": NS},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "OnFailure",
                        "containers": [{"name": "create", "image": image, "args": args}],
                    }
                }
            },
        },
    )


def namespace(name: str = NS) -> Item:
    return Item("ns", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


CREATE = [
    "create",
    "--host=kps-operator,kps-operator.monitoring.svc",
    f"--namespace={NS}",
    "--secret-name=kps-admission",
]


def secret_problems(*items: Item) -> list[str]:
    return [p.message for p in reference_problems([namespace(), *items], ClusterFacts()) if p.rule == "secret-ref"]


class TestCertgenSecrets:
    def test_a_secret_nothing_creates_is_reported(self):
        (message,) = secret_problems(operator())
        assert "Secret monitoring/kps-admission" in message

    def test_the_secret_a_certgen_job_of_the_same_release_creates_exists(self):
        assert secret_problems(operator(), certgen_job(CREATE)) == []

    def test_it_has_the_keys_certgen_writes_and_no_others(self):
        assert secret_problems(operator(key="cert"), certgen_job(CREATE)) == []
        (message,) = secret_problems(operator(key="tls.crt"), certgen_job(CREATE))
        assert "key 'tls.crt'" in message and "ca, cert, key" in message

    def test_a_certgen_job_of_another_release_does_not_count(self):
        assert len(secret_problems(operator(), certgen_job(CREATE, source="other-release"))) == 1

    def test_the_job_must_run_certgen_create(self):
        assert len(secret_problems(operator(), certgen_job(CREATE, image="busybox:1.37"))) == 1
        patch = ["patch", "--webhook-name=kps-admission", f"--namespace={NS}", "--secret-name=kps-admission"]
        assert len(secret_problems(operator(), certgen_job(patch))) == 1

    def test_the_secret_lives_in_the_namespace_the_job_names(self):
        elsewhere = [a if not a.startswith("--namespace=") else "--namespace=other" for a in CREATE]
        (message,) = secret_problems(operator(), certgen_job(elsewhere))
        assert "Secret monitoring/kps-admission" in message
