"""The names of the Kubernetes Secrets AirflowRelease owns (`<release>-pulumi-<role>`)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SecretNames:
    """Names of the Kubernetes Secrets AirflowRelease owns.

    They all carry a `-pulumi-` infix so they can never collide with a Secret
    the chart would generate under its defaults (`<release>-fernet-key`, ...,
    apache/airflow#58982), and they are per release, so two releases in one
    namespace never share one.
    """

    release: str

    def _n(self, role: str) -> str:
        return f"{self.release}-pulumi-{role}"

    @property
    def fernet_key(self) -> str:
        return self._n("fernet-key")

    @property
    def api_secret_key(self) -> str:
        return self._n("api-secret-key")

    @property
    def jwt_secret(self) -> str:
        return self._n("jwt-secret")

    @property
    def webserver_secret_key(self) -> str:
        return self._n("webserver-secret-key")

    @property
    def redis_password(self) -> str:
        return self._n("redis-password")

    @property
    def broker_url(self) -> str:
        return self._n("broker-url")

    @property
    def metadata(self) -> str:
        return self._n("metadata")

    @property
    def metadata_async(self) -> str:
        """The async engine's URL: a Secret of its own, so a stack deployed before it keeps its
        metadata Secret unchanged (a changed Secret is replaced, and that one is protected)."""
        return self._n("metadata-async")

    @property
    def postgres(self) -> str:
        return self._n("postgres")

    @property
    def pgbouncer_config(self) -> str:
        return self._n("pgbouncer-config")

    @property
    def pgbouncer_stats(self) -> str:
        return self._n("pgbouncer-stats")

    @property
    def flower(self) -> str:
        """Flower's basic-auth credentials (`basicAuth`: `user:password`), the chart's `flower.secretName`."""
        return self._n("flower")

    @property
    def database_ca(self) -> str:
        """The external database's CA certificate (`airflow.database.caCertificate`, key `ca.crt`)."""
        return self._n("database-ca")

    @property
    def admin(self) -> str:
        return self._n("admin")

    @property
    def git_credentials(self) -> str:
        return self._n("git-credentials")

    @property
    def git_ssh(self) -> str:
        return self._n("git-ssh")

    @property
    def environment(self) -> str:
        return self._n("environment")
