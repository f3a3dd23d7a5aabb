#!/bin/bash
# Entrypoint of the node's stand-in for Bitnami's PostgreSQL image (e2e/node/images.py): when
# the command is run.sh (the image's default), set the server up first (run.sh --setup:
# initialise an empty data folder, write the configuration from the environment), then mark
# setup done in /opt/bitnami/postgresql/tmp/.initialized, as Bitnami's entrypoint does.
set -euo pipefail

if [[ "$*" == *"/opt/bitnami/scripts/postgresql/run.sh"* ]]; then
    echo "postgresql: setting up (Debian's PostgreSQL $(postgres --version | awk '{print $3}'))"
    /opt/bitnami/scripts/postgresql/run.sh --setup
    touch /opt/bitnami/postgresql/tmp/.initialized
    echo "postgresql: setup done"
fi
exec "$@"
