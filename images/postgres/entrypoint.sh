#!/bin/sh
# First start (an empty $PGDATA): a cluster whose superuser `postgres` logs in only over
# the local socket (peer), a role $POSTGRES_USER (default executor) with the password
# $POSTGRES_PASSWORD, owning the database $POSTGRES_DB (default: the role's name), and
# password (scram-sha-256) logins from any address. Then the command, PostgreSQL.
set -eu
user=${POSTGRES_USER:-executor}
database=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (the password of $user) for the first start}"
    initdb --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 --pgdata="$PGDATA" >/dev/null
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    quote_id() { printf '"%s"' "$(printf %s "$1" | sed 's/"/""/g')"; }
    quote_literal() { printf "'%s'" "$(printf %s "$1" | sed "s/'/''/g")"; }
    # Single-user mode: no server listens while the role is made; one statement a line.
    postgres --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE $(quote_id "$user") LOGIN PASSWORD $(quote_literal "$POSTGRES_PASSWORD");
CREATE DATABASE $(quote_id "$database") OWNER $(quote_id "$user");
SQL
    echo "postgres-entrypoint: made the cluster, the role $user and the database $database"
fi
exec "$@"
