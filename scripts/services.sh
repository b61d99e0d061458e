# Sourced by scripts/dev and scripts/test: fails early, saying which service is down
# and how to start it, when Redis or RabbitMQ cannot be reached.

# host_port URL DEFAULT_PORT -> "host port" of a redis:// or amqp:// URL.
host_port() {
  local rest=${1#*://}
  rest=${rest#*@}
  rest=${rest%%/*}
  local host=${rest%%:*} port=$2
  [[ $rest == *:* ]] && port=${rest##*:}
  echo "$host $port"
}

# reachable HOST PORT: a TCP connection within 2 seconds.
reachable() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

require_services() {
  local ok=1 redis amqp
  read -r -a redis <<<"$(host_port "${REDIS_URL:-redis://127.0.0.1:6379}" 6379)"
  read -r -a amqp <<<"$(host_port "${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" 5672)"
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
  [[ $ok == 1 ]]
}
