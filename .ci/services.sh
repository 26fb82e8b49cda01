#!/usr/bin/env bash
# Make sure this machine's PostgreSQL and Redis answer, starting them if they are down.
# Exits non-zero if either still does not answer: CI must fail, never skip, without them.
set -euo pipefail

pg_up() { python3 - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
except OSError:
    sys.exit(1)
PY
}
redis_up() { python3 - <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 6379), timeout=1)
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

wait_for() {
  local name=$1 check=$2
  for _ in $(seq 1 30); do
    if "$check"; then echo "$name: up"; return 0; fi
    sleep 1
  done
  echo "$name: not reachable on 127.0.0.1" >&2
  return 1
}

if ! pg_up; then
  echo "PostgreSQL is down; starting it"
  if [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
fi
wait_for PostgreSQL pg_up

if ! redis_up; then
  echo "Redis is down; starting it"
  if command -v redis-server >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  fi
fi
wait_for Redis redis_up
