#!/usr/bin/env bash
# The secrets docker-compose.yml mounts (as compose secrets), made once with
# openssl before the first `docker compose up`:
#
#   scripts/compose-secrets.sh [DIR]   # DIR defaults to deploy/secrets
#
# It writes, keeping any file that exists already (delete one to renew it):
#   tls/ca.pem, tls/ca.key        a private CA, valid 365 days (ca.key is never
#                                 mounted); tls/server.pem and tls/server.key:
#                                 the certificate of Kafka and Redis, for the
#                                 names kafka, redis, localhost and 127.0.0.1
#   kafka.p12                     Kafka's PKCS12 keystore (the key and chain)
#   kafka-keystore-password       its password
#   kafka_jaas.conf               Kafka's SASL PLAIN users: "broker" (the
#                                 broker's own connections) and "fraudstream"
#   kafka-password                the password of the Kafka user fraudstream
#   redis-users.acl               Redis's ACL: the default user off, the user
#                                 fraudstream (SHA-256 of its password) limited
#                                 to the fraudstream: keys and channels
#   redis-password                the password of the Redis user fraudstream
#   fleet-secret                  the scorers' HMAC secret for the fleet budget
#   model-signing-key.pem         the trainer's ed25519 key (PKCS#8) that signs
#   model-verify-key.pem          models; its public key (SPKI), for scorers
#   review-password               the review page's password of the analyst
#   review-users                  the review service's users file: analyst,
#                                 with review-password's bcrypt hash (made
#                                 by `go run ./cmd/review passwd`: needs Go)
#
# DIR is readable by its owner only. The files in it are readable by all,
# because compose bind-mounts each one into containers that run as other
# users (kafka as appuser, redis as redis, ours as nonroot); DIR is what
# keeps other users of this machine out. Passwords are random hex, so they
# need no quoting in the JAAS or ACL files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/../deploy/secrets}
command -v openssl >/dev/null || { echo "compose-secrets.sh needs openssl" >&2; exit 1; }
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 022

TLS_DAYS=365 "$here/tls-certs.sh" tls kafka redis review
chmod 600 tls/ca.key tls/client.key
chmod 644 tls/server.key

secret() { # FILE: 32 random bytes in hex, unless FILE exists
	[ -s "$1" ] || openssl rand -hex 32 >"$1"
}
for f in kafka-keystore-password kafka-password kafka-broker-password redis-password fleet-secret review-password; do
	secret "$f"
done

if [ ! -s kafka.p12 ]; then
	openssl pkcs12 -export -name kafka -in tls/server.pem -inkey tls/server.key -certfile tls/ca.pem \
		-passout file:kafka-keystore-password -out kafka.p12
fi

if [ ! -s kafka_jaas.conf ]; then
	cat >kafka_jaas.conf <<JAAS
KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
  username="broker"
  password="$(cat kafka-broker-password)"
  user_broker="$(cat kafka-broker-password)"
  user_fraudstream="$(cat kafka-password)";
};
JAAS
fi

if [ ! -s redis-users.acl ]; then
	hash=$(tr -d '\n' <redis-password | openssl dgst -sha256 -r | cut -d' ' -f1)
	cat >redis-users.acl <<ACL
user default off
user fraudstream on #$hash ~fraudstream:* &fraudstream:* +@all -@admin
ACL
fi

if [ ! -s model-signing-key.pem ]; then
	openssl genpkey -algorithm ed25519 -out model-signing-key.pem
	openssl pkey -in model-signing-key.pem -pubout -out model-verify-key.pem
fi
if [ ! -s review-users ]; then
	command -v go >/dev/null || { echo "compose-secrets.sh needs Go for the review users file (review passwd)" >&2; exit 1; }
	(cd "$here/.." && go run ./cmd/review passwd --user analyst --role analyst) <review-password >review-users.tmp
	mv review-users.tmp review-users
fi
# openssl writes keys for its owner only; the containers need to read them.
chmod 644 kafka.p12 model-signing-key.pem
echo "compose secrets in $(pwd)"
