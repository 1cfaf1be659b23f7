# Shared by fetch.sh and kafka.sh (sourced, not run): where the pom is and where its jars go.
KAFKA_DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_REPO_DIR=$(cd "$KAFKA_DEPLOY_DIR/../.." && pwd)
# The version comes from the pom's <kafka.version> unless INFERSTREAM_KAFKA_VERSION overrides it.
KAFKA_VERSION=${INFERSTREAM_KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' \
  "$KAFKA_DEPLOY_DIR/pom.xml" | head -n1)}
KAFKA_HOME_DIR=${INFERSTREAM_CACHE_DIR:-$HOME/.cache/inferstream}/kafka-$KAFKA_VERSION
KAFKA_LIBS=$KAFKA_HOME_DIR/libs
