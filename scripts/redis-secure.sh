#!/usr/bin/env bash
# A redis-server on loopback that takes TLS connections only, from clients
# with a certificate of its CA, and logs in ACL users only: for integration
# tests and local runs of the secured setup. Needs a redis-server built with
# TLS (Debian's is) and openssl.
#
#   scripts/redis-secure.sh start DIR [PORT]   # PORT defaults to 16380
#   scripts/redis-secure.sh stop DIR
#
# The CA and the certificates are made in DIR/tls (scripts/tls-certs.sh).
# The default user is off; the user "fraudstream" has a random password
# (DIR/secrets/redis-password) and may use the keys and pub/sub channels
# under "fraudstream:" with every command but the administrative ones. It
# prints the settings the programs take, as environment assignments:
#   FRAUDSTREAM_REDIS_URL=rediss://fraudstream@127.0.0.1:PORT/0
#   FRAUDSTREAM_REDIS_PASSWORD_FILE=DIR/secrets/redis-password
#   FRAUDSTREAM_REDIS_TLS_CA=DIR/tls/ca.pem
#   FRAUDSTREAM_REDIS_TLS_CERT=DIR/tls/client.pem
#   FRAUDSTREAM_REDIS_TLS_KEY=DIR/tls/client.key
# A redis-server without TLS support makes start exit with status 3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: redis-secure.sh start|stop DIR [PORT]}
dir=${2:?usage: redis-secure.sh start|stop DIR [PORT]}
port=${3:-16380}

case "$cmd" in
start)
	mkdir -p "$dir"
	"$here/tls-certs.sh" "$dir/tls"
	mkdir -p "$dir/secrets"
	chmod 700 "$dir/secrets"
	[ -s "$dir/secrets/redis-password" ] || (umask 077 && openssl rand -hex 16 >"$dir/secrets/redis-password")
	# The password goes in the ACL file, not on redis-server's command line
	# (which every user of the machine can read).
	(umask 077 && cat >"$dir/users.acl" <<ACL
user default off
user fraudstream on >$(cat "$dir/secrets/redis-password") ~fraudstream:* &fraudstream:* +@all -@admin
ACL
	)
	if ! out=$(redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 \
		--tls-cert-file "$dir/tls/server.pem" --tls-key-file "$dir/tls/server.key" \
		--tls-ca-cert-file "$dir/tls/ca.pem" --tls-auth-clients yes \
		--aclfile "$dir/users.acl" --save "" --appendonly no --dir "$dir" \
		--daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" 2>&1); then
		echo "$out" >&2
		if echo "$out" | grep -q "tls-port" && echo "$out" | grep -q "Bad directive"; then
			echo "this redis-server does not take TLS (build it with BUILD_TLS=yes, or use Debian's)" >&2
			exit 3
		fi
		exit 1
	fi
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "FRAUDSTREAM_REDIS_URL=rediss://fraudstream@127.0.0.1:$port/0"
			echo "FRAUDSTREAM_REDIS_PASSWORD_FILE=$dir/secrets/redis-password"
			echo "FRAUDSTREAM_REDIS_TLS_CA=$dir/tls/ca.pem"
			echo "FRAUDSTREAM_REDIS_TLS_CERT=$dir/tls/client.pem"
			echo "FRAUDSTREAM_REDIS_TLS_KEY=$dir/tls/client.key"
			exit 0
		fi
		sleep 0.1
	done
	echo "redis-server did not open 127.0.0.1:$port within 10s; see $dir/redis.log" >&2
	tail -20 "$dir/redis.log" >&2 || true
	exit 1
	;;
stop)
	if [ -f "$dir/redis.pid" ]; then
		pid=$(cat "$dir/redis.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$dir/redis.pid"
	fi
	;;
*)
	echo "usage: redis-secure.sh start|stop DIR [PORT]" >&2
	exit 2
	;;
esac
