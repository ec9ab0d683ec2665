#!/usr/bin/env bash
# A local Redis Cluster for trying the stores on one: six redis-servers
# (three masters, three replicas) on 127.0.0.1:7000-7005, joined with
# `redis-cli --cluster create` (Debian: redis-server, redis-tools).
#
#   examples/redis-cluster.sh start   # prints the seed list
#   cargo run --example server --features redis -- \
#       --redis-cluster redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002
#   examples/redis-cluster.sh stop
#
# BASE (default 7000) moves the ports; DIR (default /tmp/tower-perf-cluster)
# holds the nodes' files. Nothing is persisted.
set -euo pipefail

base="${BASE:-7000}"
dir="${DIR:-/tmp/tower-perf-cluster}"
ports=$(seq "$base" $((base + 5)))

answers() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }

case "${1:-}" in
  start)
    mkdir -p "$dir"
    for p in $ports; do
      if answers "$p"; then
        echo "port $p is taken (a cluster already running? $0 stop)" >&2
        exit 1
      fi
      redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 2000 \
        --dir "$dir" --save '' --appendonly no --daemonize yes \
        --pidfile "$dir/$p.pid" --logfile "$dir/$p.log"
    done
    for p in $ports; do
      for _ in $(seq 1 50); do answers "$p" && break; sleep 0.1; done
    done
    # shellcheck disable=SC2046
    redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
      --cluster-replicas 1 --cluster-yes >/dev/null
    for _ in $(seq 1 100); do
      redis-cli -p "$base" cluster info | grep -q 'cluster_state:ok' && break
      sleep 0.1
    done
    redis-cli -p "$base" cluster info | grep -q 'cluster_state:ok' || {
      echo "the cluster did not come up" >&2
      exit 1
    }
    seeds=$(for p in $ports; do printf 'redis://127.0.0.1:%s,' "$p"; done)
    echo "${seeds%,}"
    ;;
  stop)
    for p in $ports; do
      redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
