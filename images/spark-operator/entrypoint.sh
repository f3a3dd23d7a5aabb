#!/bin/bash
# The Spark operator's entrypoint: the controller or the webhook (the chart's args say which),
# under tini, which reaps the spark-submit processes the controller runs.
set -e
exec /usr/bin/tini -s -- /usr/bin/spark-operator "$@"
