#!/usr/bin/env bash
# A PostgreSQL database for the MLflow tracking server (the multi-user backend), on 127.0.0.1 only.
# Usage: scripts/postgres_tracking.sh start|stop   (PGPORT, PGDATA override the defaults)
# Prints the backend URI to pass to `mlflow server --backend-store-uri`.
set -euo pipefail
PGPORT=${PGPORT:-5433}
PGDATA=${PGDATA:-$(pwd)/data/postgres}
if ! command -v initdb >/dev/null; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1 || true)
  if [ -z "$bin" ]; then  # Debian's server package
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    bin=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
  fi
  export PATH="$bin:$PATH"
fi
# PostgreSQL refuses to run as root: run it as the postgres user when we are root.
as_owner() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "PATH=$PATH $*"; else sh -c "$*"; fi; }

case "${1:-start}" in
  start)
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
    [ -f "$PGDATA/PG_VERSION" ] || as_owner "initdb -D '$PGDATA' -U mlflow --auth=trust >/dev/null"
    as_owner "pg_ctl -D '$PGDATA' status >/dev/null" || \
      as_owner "pg_ctl -D '$PGDATA' -w -l '$PGDATA/server.log' -o '-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1' start >/dev/null"
    as_owner "psql -h 127.0.0.1 -p $PGPORT -U mlflow -d postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='mlflow'\"" \
      | grep -q 1 || as_owner "createdb -h 127.0.0.1 -p $PGPORT -U mlflow mlflow"
    echo "postgresql+psycopg2://mlflow@127.0.0.1:$PGPORT/mlflow"
    ;;
  stop)
    as_owner "pg_ctl -D '$PGDATA' -m fast stop"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
