#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one node) on loopback, for integration
# tests and local runs. Needs Java 17 and Maven; the jars come from Maven
# Central (cached in ~/.m2).
#
#   scripts/kafka.sh start DIR [PORT]   # PORT defaults to 19092; prints KAFKA_BROKERS=127.0.0.1:PORT
#   scripts/kafka.sh start-secure DIR [PORT]
#   scripts/kafka.sh stop DIR
#   scripts/kafka.sh libs DIR        # only fetch the jars into DIR/libs
#
# start-secure serves SASL_SSL on PORT instead of PLAINTEXT: TLS with a
# certificate from a CA made in DIR/tls (scripts/tls-certs.sh; the broker's
# keystore made with keytool), and SASL PLAIN, SCRAM-SHA-256 and
# SCRAM-SHA-512 for the user "fraudstream", whose random password is in
# DIR/secrets/sasl-password (the SCRAM credentials are written with
# kafka-storage format --add-scram). The broker's own listener, PLAINTEXT on
# 127.0.0.1:PORT+2, is for the broker itself. It prints the settings the
# programs take, as environment assignments:
#   KAFKA_BROKERS=127.0.0.1:PORT
#   FRAUDSTREAM_KAFKA_TLS_CA=DIR/tls/ca.pem
#   FRAUDSTREAM_KAFKA_SASL_USER=fraudstream
#   FRAUDSTREAM_KAFKA_SASL_PASSWORD_FILE=DIR/secrets/sasl-password
# (add FRAUDSTREAM_KAFKA_SASL_MECHANISM=scram-sha-512, or plain, or scram-sha-256).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: kafka.sh start|start-secure|stop|libs DIR [PORT]}
dir=${2:?usage: kafka.sh start|start-secure|stop|libs DIR [PORT]}
port=${3:-19092}
ctl=$((port + 1))

libs() {
	mkdir -p "$dir"
	if [ ! -d "$dir/libs" ]; then
		if ! mvn -B -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
			-DoutputDirectory="$dir/libs" -DincludeScope=runtime >"$dir/mvn.log" 2>&1; then
			tail -30 "$dir/mvn.log" >&2
			rm -rf "$dir/libs"
			exit 1
		fi
	fi
}

case "$cmd" in
libs)
	libs
	;;
start | start-secure)
	libs
	scram=()
	if [ "$cmd" = start ]; then
		listeners="listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT"
	else
		internal=$((port + 2))
		"$here/tls-certs.sh" "$dir/tls"
		mkdir -p "$dir/secrets"
		chmod 700 "$dir/secrets"
		for f in sasl-password keystore-password; do
			[ -s "$dir/secrets/$f" ] || (umask 077 && openssl rand -hex 16 >"$dir/secrets/$f")
		done
		password=$(cat "$dir/secrets/sasl-password")
		kspass=$(cat "$dir/secrets/keystore-password")
		if [ ! -f "$dir/tls/broker.p12" ]; then
			# The broker's key pair made in a PKCS12 keystore by keytool, its
			# certificate signed by the CA, then the CA and the signed
			# certificate imported back (Kafka's documented procedure).
			ks=(-keystore "$dir/tls/broker.p12" -storetype PKCS12 -storepass "$kspass")
			san=SAN=dns:localhost,ip:127.0.0.1
			keytool -genkeypair -alias broker -keyalg EC -groupname secp256r1 -dname CN=localhost -ext "$san" -validity 7 "${ks[@]}" 2>/dev/null
			keytool -certreq -alias broker -ext "$san" -file "$dir/tls/broker.csr" "${ks[@]}" 2>/dev/null
			printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/tls/broker.ext"
			openssl x509 -req -in "$dir/tls/broker.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" -CAcreateserial \
				-days 7 -extfile "$dir/tls/broker.ext" -out "$dir/tls/broker.pem" 2>/dev/null
			keytool -importcert -noprompt -alias ca -file "$dir/tls/ca.pem" "${ks[@]}" 2>/dev/null
			keytool -importcert -alias broker -file "$dir/tls/broker.pem" "${ks[@]}" 2>/dev/null
			rm -f "$dir/tls/broker.csr" "$dir/tls/broker.ext"
		fi
		listeners="listeners=SASL_SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl,INTERNAL://127.0.0.1:$internal
advertised.listeners=SASL_SSL://127.0.0.1:$port,INTERNAL://127.0.0.1:$internal
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_fraudstream=\"$password\";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/tls/broker.p12
ssl.keystore.password=$kspass
ssl.client.auth=none"
		scram=(--add-scram "SCRAM-SHA-256=[name=fraudstream,password=\"$password\"]" --add-scram "SCRAM-SHA-512=[name=fraudstream,password=\"$password\"]")
	fi
	(umask 077 && cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
$listeners
controller.listener.names=CONTROLLER
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
PROPS
	)
	cat >"$dir/log4j2.properties" <<'LOG'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d %p %c{1} %m%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
LOG
	java_opts=(-Xms256m -Xmx512m -Dkafka.logs.dir="$dir" -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$dir/libs/*")
	if [ ! -f "$dir/data/meta.properties" ]; then
		java "${java_opts[@]}" kafka.tools.StorageTool format -t "$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)" -c "$dir/server.properties" ${scram[@]+"${scram[@]}"} >"$dir/format.log" 2>&1
	fi
	nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
	echo $! >"$dir/kafka.pid"
	for _ in $(seq 120); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "KAFKA_BROKERS=127.0.0.1:$port"
			if [ "$cmd" = start-secure ]; then
				echo "FRAUDSTREAM_KAFKA_TLS_CA=$dir/tls/ca.pem"
				echo "FRAUDSTREAM_KAFKA_SASL_USER=fraudstream"
				echo "FRAUDSTREAM_KAFKA_SASL_PASSWORD_FILE=$dir/secrets/sasl-password"
			fi
			exit 0
		fi
		if ! kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; then
			echo "kafka exited; see $dir/stdout.log and $dir/server.log" >&2
			tail -20 "$dir/stdout.log" >&2
			exit 1
		fi
		sleep 0.5
	done
	echo "kafka did not open 127.0.0.1:$port within 60s" >&2
	exit 1
	;;
stop)
	if [ -f "$dir/kafka.pid" ]; then
		pid=$(cat "$dir/kafka.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$dir/kafka.pid"
	fi
	;;
*)
	echo "usage: kafka.sh start|start-secure|stop|libs DIR [PORT]" >&2
	exit 2
	;;
esac
