#!/bin/sh
# Starts the test registry: Debian's docker-registry on 127.0.0.1:5000 only.
#
#   hack/registry-up.sh          start it (nothing happens when it already answers)
#   hack/registry-up.sh stop     stop the registry this script started
#
# Installs nothing: needs the Debian packages docker-registry and curl.
# State (config, storage, pid file, log) lives under $AURAE_REGISTRY_DIR
# (default /var/tmp/aurae-registry) and survives restarts, so images pushed by
# hack/build-test-images.sh stay available. Idempotent.
set -eu

ADDR=127.0.0.1:5000
DIR=${AURAE_REGISTRY_DIR:-/var/tmp/aurae-registry}
CONFIG=$DIR/config.yml
PIDFILE=$DIR/registry.pid
LOG=$DIR/registry.log
REGISTRY=/usr/bin/docker-registry

answers() {
	curl -sf -o /dev/null --max-time 2 "http://$ADDR/v2/"
}

running_pid() {
	[ -f "$PIDFILE" ] || return 1
	pid=$(cat "$PIDFILE")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	# Only a docker-registry started with our config counts.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$CONFIG" || return 1
	echo "$pid"
}

if [ "${1:-}" = stop ]; then
	if pid=$(running_pid); then
		kill "$pid"
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
		echo "registry-up: stopped docker-registry (pid $pid)"
	else
		echo "registry-up: no registry started by this script is running"
	fi
	rm -f "$PIDFILE"
	exit 0
fi

if answers; then
	echo "registry-up: a registry already answers at http://$ADDR/v2/"
	exit 0
fi

if [ ! -x "$REGISTRY" ]; then
	echo "registry-up: $REGISTRY is missing: apt-get install docker-registry" >&2
	exit 1
fi

if pid=$(running_pid); then
	# Started but not answering (yet, or wedged): give it a fresh start.
	kill "$pid" 2>/dev/null || true
	sleep 0.5
fi

mkdir -p "$DIR/storage"
cat >"$CONFIG" <<YAML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
  fields:
    service: aurae-test-registry
storage:
  filesystem:
    rootdirectory: $DIR/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
YAML

# setsid + nohup: the registry outlives the calling shell (CI step, test run).
setsid nohup "$REGISTRY" serve "$CONFIG" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

i=0
until answers; do
	i=$((i + 1))
	if [ $i -gt 150 ]; then
		echo "registry-up: docker-registry did not answer at http://$ADDR/v2/ within 30 s; log: $LOG" >&2
		tail -n 20 "$LOG" >&2 || true
		exit 1
	fi
	if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
		echo "registry-up: docker-registry exited; log: $LOG" >&2
		tail -n 20 "$LOG" >&2 || true
		exit 1
	fi
	sleep 0.2
done
echo "registry-up: docker-registry answers at http://$ADDR/v2/ (pid $(cat "$PIDFILE"), storage $DIR/storage)"
