#!/usr/bin/env bash
# Fetches the Kafka broker jars once, through Maven, into
#   ${INFERSTREAM_CACHE_DIR:-~/.cache/inferstream}/kafka-<version>/libs
# A marker holding a hash of the pom and the version makes later runs instant; editing the pom
# (or changing INFERSTREAM_KAFKA_VERSION) fetches again. Works from any cwd.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

[ -n "$KAFKA_VERSION" ] || { echo "[kafka] no <kafka.version> in $KAFKA_DEPLOY_DIR/pom.xml" >&2; exit 1; }
marker=$KAFKA_HOME_DIR/.fetched
key=$( { cat "$KAFKA_DEPLOY_DIR/pom.xml"; echo "$KAFKA_VERSION"; } | sha256sum | cut -c1-16)
[ -f "$marker" ] && [ "$(cat "$marker")" = "$key" ] && [ -d "$KAFKA_LIBS" ] && exit 0

mkdir -p "$KAFKA_HOME_DIR"
# One fetch at a time per version (setup.sh and a test session may race); re-check after the wait.
exec 9>"$KAFKA_HOME_DIR/.lock"
flock 9
[ -f "$marker" ] && [ "$(cat "$marker")" = "$key" ] && [ -d "$KAFKA_LIBS" ] && exit 0

echo "[kafka] fetching Kafka $KAFKA_VERSION jars into $KAFKA_LIBS" >&2
tmp=$KAFKA_HOME_DIR/libs.tmp
rm -rf "$tmp"
# includeScope=runtime: compile + runtime deps. Maven 3.8 prints stray colour codes even with
# -q -B, so its output (errors included) goes to stderr with escape codes stripped.
mvn -q -B -f "$KAFKA_DEPLOY_DIR/pom.xml" dependency:copy-dependencies \
  -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$tmp" \
  2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null   # fail loudly if Maven copied nothing useful
# Two renames, not rm + mv: a broker starting from this folder meanwhile finds no jars for a
# moment at most.
rm -rf "$KAFKA_HOME_DIR/libs.old"
[ ! -d "$KAFKA_LIBS" ] || mv "$KAFKA_LIBS" "$KAFKA_HOME_DIR/libs.old"
mv "$tmp" "$KAFKA_LIBS"
rm -rf "$KAFKA_HOME_DIR/libs.old"
echo "$key" >"$marker"
echo "[kafka] $(ls "$KAFKA_LIBS" | wc -l) jars in $KAFKA_LIBS" >&2
