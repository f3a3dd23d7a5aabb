#!/bin/bash
# The Spark image's entrypoint, for the pods Spark on Kubernetes makes:
#   driver ARGS...   the driver of a cluster-mode submission: spark-submit in client mode,
#                    bound to the pod's address (SPARK_DRIVER_BIND_ADDRESS)
#   executor         an executor: KubernetesExecutorBackend with what the driver put in the
#                    pod's environment (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, ...)
#   anything else    run as given (spark-submit, bash, ...)
set -eo pipefail

: "${SPARK_HOME:=/opt/spark}"
conf_dir="${SPARK_CONF_DIR:-$SPARK_HOME/conf}"
classpath="$conf_dir:$SPARK_HOME/jars/*${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}${SPARK_EXTRA_CLASSPATH:+:$SPARK_EXTRA_CLASSPATH}"

# The JVM options the driver hands executors, as SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
java_opts=()
while IFS='=' read -r name _; do
  java_opts+=("${!name}")
done < <(env | grep -o '^SPARK_JAVA_OPT_[0-9]*=' | sort -t_ -k4 -n)

case "${1:-}" in
  driver)
    shift
    exec /usr/bin/tini -s -- "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS}" \
      --conf "spark.executorEnv.SPARK_DRIVER_POD_IP=${SPARK_DRIVER_BIND_ADDRESS}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    exec /usr/bin/tini -s -- "${JAVA_HOME:+$JAVA_HOME/bin/}java" "${java_opts[@]}" \
      -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" -cp "$classpath" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    exec /usr/bin/tini -s -- "$@"
    ;;
esac
