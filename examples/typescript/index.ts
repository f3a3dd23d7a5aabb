// Airflow on a laptop cluster (minikube or kind) from TypeScript: one AirflowPlatform, configured
// with the same keys as the Python stack's Pulumi.<stack>.yaml (see the configuration reference).
import * as pulumi from "@pulumi/pulumi";
import * as airflowK8s from "@pulumi/airflow-k8s";

const config = new pulumi.Config();
// Where the Airflow chart comes from (default: the chart's public repository, pinned by the package).
const chart = config.getObject<Record<string, string>>("chart");

const platform = new airflowK8s.AirflowPlatform("airflow", {
    airflow: {
        namespace: config.get("namespace") ?? "airflow-ts",
        releaseName: "airflow",
        executor: "KubernetesExecutor",
        dags: { mode: "hostPath", hostPath: { path: "/data/airflow-dags" } },
        database: { mode: "bundled", storageSize: "2Gi" },
        ...(chart ? { chart } : {}),
    },
    logs: { mode: "hostPath", size: "5Gi", hostPath: { path: "/data/airflow-logs" } },
    cluster: {
        environment: "laptop",
        storageClasses: ["standard"],
        ...(config.get("kubernetesVersion") ? { kubernetesVersion: config.get("kubernetesVersion") } : {}),
    },
    // Credentials are secret inputs of the package: pass them with pulumi.secret or `config --secret`.
    connections: config.getSecretObject<Record<string, string>>("connections"),
});

export const namespace = platform.namespace;
export const uiServiceName = platform.uiServiceName;
export const uiServicePort = platform.uiServicePort;
export const adminUsername = platform.adminUsername;
export const adminPassword = platform.adminPassword;
