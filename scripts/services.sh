# Sourced by scripts/dev, scripts/test and scripts/bench: fails early, saying which
# service is down and how to start it, when Redis, RabbitMQ or PostgreSQL cannot be
# reached.

# host_port URL DEFAULT_PORT -> "host port" of a redis://, amqp:// or postgres:// URL.
host_port() {
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  local host=${rest%%:*} port=$2
  [[ $rest == *:* ]] && port=${rest##*:}
  echo "$host $port"
}

# The api's default DATABASE_URL: the local server, database otp_gateway.
DEFAULT_DATABASE_URL=postgres://postgres@127.0.0.1:5432/otp_gateway

# require_database: creates the database of DATABASE_URL if it is not there (the api
# does not create it: a missing database stops it at start, naming it).
require_database() {
  local url=${DATABASE_URL:-$DEFAULT_DATABASE_URL}
  local name=${url##*/}
  name=${name%%\?*}
  if ! command -v psql >/dev/null; then
    echo "psql not found: create the database $name yourself (or apt-get install postgresql-client)" >&2
    return 0
  fi
  local server=${url%/*}/postgres
  if [[ -z $(psql "$server" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'") ]]; then
    psql "$server" -qc "CREATE DATABASE \"$name\"" && echo "created the database $name" >&2
  fi
}

# reachable HOST PORT: a TCP connection within 2 seconds.
reachable() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

require_services() {
  local ok=1 redis amqp postgres
  read -r -a redis <<<"$(host_port "${REDIS_URL:-redis://127.0.0.1:6379}" 6379)"
  read -r -a amqp <<<"$(host_port "${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" 5672)"
  read -r -a postgres <<<"$(host_port "${DATABASE_URL:-$DEFAULT_DATABASE_URL}" 5432)"
  if ! reachable "${redis[0]}" "${redis[1]}"; then
    echo "Redis is not reachable at ${redis[0]}:${redis[1]}. Start it, e.g.:" >&2
    echo "  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no" >&2
    ok=0
  fi
  if ! reachable "${amqp[0]}" "${amqp[1]}"; then
    echo "RabbitMQ is not reachable at ${amqp[0]}:${amqp[1]}. Start it, e.g.:" >&2
    echo "  rabbitmq-server -detached" >&2
    ok=0
  fi
  if ! reachable "${postgres[0]}" "${postgres[1]}"; then
    echo "PostgreSQL is not reachable at ${postgres[0]}:${postgres[1]}. Start it, e.g.:" >&2
    echo "  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2
    ok=0
  fi
  [[ $ok == 1 ]]
}
