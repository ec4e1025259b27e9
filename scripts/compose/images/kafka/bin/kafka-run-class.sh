#!/bin/bash
# Runs a Kafka command-line class: a small, quickly started JVM (the health check runs one
# every few seconds per broker).
exec java -Xss512k -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp '/opt/kafka/libs/*' "$@"
