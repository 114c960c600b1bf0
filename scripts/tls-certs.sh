#!/usr/bin/env bash
# A throwaway certificate authority and certificates for local and CI runs
# of the secured services (scripts/kafka.sh start-secure,
# scripts/redis-secure.sh, scripts/compose-secrets.sh): EC P-256 keys,
# valid for $TLS_DAYS days (default 7).
#
#   scripts/tls-certs.sh DIR [NAME...]
#
# writes, unless DIR/ca.pem exists already:
#   DIR/ca.pem, DIR/ca.key            the CA (clients trust ca.pem)
#   DIR/server.pem, DIR/server.key    a server certificate for localhost,
#                                     127.0.0.1 and each NAME (DNS names)
#   DIR/client.pem, DIR/client.key    a client certificate (CN fraudstream)
# Private keys are readable by their owner only.
set -euo pipefail
dir=${1:?usage: tls-certs.sh DIR [NAME...]}
shift
mkdir -p "$dir"
if [ -f "$dir/ca.pem" ]; then
	exit 0
fi
umask 077
days=${TLS_DAYS:-7}
san=DNS:localhost,IP:127.0.0.1
for name in "$@"; do san="$san,DNS:$name"; done
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days "$days" \
	-subj "/CN=fraudstream test CA $(openssl rand -hex 4)" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
# issue NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
issue() {
	openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj "$2" \
		-keyout "$dir/$1.key" -out "$dir/$1.csr" 2>/dev/null
	printf '%s\n' "$3" >"$dir/$1.ext"
	openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
		-days "$days" -extfile "$dir/$1.ext" -out "$dir/$1.pem" 2>/dev/null
	rm -f "$dir/$1.csr" "$dir/$1.ext"
}
issue server "/CN=${1:-localhost}" "subjectAltName=$san
extendedKeyUsage=serverAuth"
issue client "/CN=fraudstream" "extendedKeyUsage=clientAuth"
chmod 644 "$dir"/*.pem
