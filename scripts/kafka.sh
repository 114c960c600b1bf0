#!/usr/bin/env bash
# A real Apache Kafka broker (KRaft, one node) on loopback, for integration
# tests and local runs. Needs Java 17 and Maven; the jars come from Maven
# Central (cached in ~/.m2).
#
#   scripts/kafka.sh start DIR [PORT]   # PORT defaults to 19092; prints KAFKA_BROKERS=127.0.0.1:PORT
#   scripts/kafka.sh stop DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:?usage: kafka.sh start|stop DIR [PORT]}
dir=${2:?usage: kafka.sh start|stop DIR [PORT]}
port=${3:-19092}
ctl=$((port + 1))

case "$cmd" in
start)
	mkdir -p "$dir"
	if [ ! -d "$dir/libs" ]; then
		if ! mvn -B -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
			-DoutputDirectory="$dir/libs" -DincludeScope=runtime >"$dir/mvn.log" 2>&1; then
			tail -30 "$dir/mvn.log" >&2
			exit 1
		fi
	fi
	cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$ctl
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$ctl
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
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
		java "${java_opts[@]}" kafka.tools.StorageTool format -t "$(java "${java_opts[@]}" kafka.tools.StorageTool random-uuid)" -c "$dir/server.properties" >"$dir/format.log" 2>&1
	fi
	nohup java "${java_opts[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
	echo $! >"$dir/kafka.pid"
	for _ in $(seq 120); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "KAFKA_BROKERS=127.0.0.1:$port"
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
	echo "usage: kafka.sh start|stop DIR [PORT]" >&2
	exit 2
	;;
esac
