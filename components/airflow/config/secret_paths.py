"""Where AirflowRelease puts Airflow's secrets: the files, volumes and variables (constants only).

Shared by the config parser (user volumes and env lists must not reuse these) and the values
(components/airflow/values/secret_files.py, which mounts them); importing nothing keeps the config layer below
the values layer.
"""

# The chart's `airflowHome` (the image's AIRFLOW_HOME) and where its pods read airflow.cfg.
AIRFLOW_HOME = "/opt/airflow"
AIRFLOW_CONFIG_PATH = f"{AIRFLOW_HOME}/airflow.cfg"
CONFIG_VOLUME = "config"
SECRETS_DIR = "/opt/airflow/secrets"
SECRETS_VOLUME = "airflow-k8s-secrets"
TMP_VOLUME = "airflow-k8s-tmp"
GIT_SYNC_TMP_VOLUME = "airflow-k8s-git-sync-tmp"
PGBOUNCER_TMP_VOLUME = "airflow-k8s-pgbouncer-tmp"
# Volume names AirflowRelease adds to the chart's pods; user volumes must not reuse them.
VOLUME_NAMES = (SECRETS_VOLUME, TMP_VOLUME, GIT_SYNC_TMP_VOLUME, PGBOUNCER_TMP_VOLUME)
CONNECTIONS_FILE = "connections.json"
VARIABLES_FILE = "variables.json"
LOCAL_FILESYSTEM_BACKEND = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
ADMIN_PASSWORD_FILE = "admin-password"
# The external database's CA (`airflow.database.caCertificate`): the key of its Secret, the file
# beside the other secrets where Airflow connects to the database itself, and libpq's (and
# asyncpg's) variable naming it.
DATABASE_CA_KEY = "ca.crt"
DATABASE_CA_FILE = "database-ca.crt"
DATABASE_CA_ENV = "PGSSLROOTCERT"

# The chart's built-in secret variables AirflowRelease replaces with files. The Elasticsearch
# and OpenSearch hosts stay (they come from the chart's own Secret when those log backends are used).
REPLACED_BUILT_IN_ENV = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW_CONN_AIRFLOW_DB",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__WEBSERVER__SECRET_KEY",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CELERY__BROKER_URL",
)
# Airflow 3's async engine URL (no built-in chart variable): the metadata Secret's second key.
ASYNC_CONN_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"
METADATA_ASYNC_KEY = "async-connection"
# Every secret variable AirflowRelease hands Airflow as a file: nothing else may set one.
FILE_ONLY_ENV = (*REPLACED_BUILT_IN_ENV, ASYNC_CONN_ENV)

# Chart values keys of the pods that run the Airflow image (the pod template follows `workers`).
AIRFLOW_COMPONENTS = (
    "scheduler",
    "apiServer",
    "webserver",
    "triggerer",
    "dagProcessor",
    "workers",
    "flower",
    "createUserJob",
    "migrateDatabaseJob",
)
# Where the chart hands the JWT secret (api-server and scheduler only): so do we.
JWT_COMPONENTS = ("apiServer", "scheduler")
# Chart values `env` lists that carry our `*_CMD` variables (extraValues add to them).
ENV_PATHS = ("env", *(f"{c}.env" for c in JWT_COMPONENTS))
