# Secure mode of deploy/kafka/kafka.sh (sourced, not run): TLS on every listener, SASL/SCRAM-SHA-512
# for clients and between brokers, StandardAuthorizer ACLs (nothing is allowed without one).
#
# Listeners of node I (no PLAINTEXT at all):
#   SASL_SSL   127.0.0.1:port+2(I-1)             clients and inter-broker replication (SCRAM user
#                                                 "admin", a super user, in the broker's JAAS line)
#   CONTROLLER 127.0.0.1:controller_port+2(I-1)  SSL with client certificates required: KRaft
#                                                 controllers cannot use SCRAM (its credentials
#                                                 live in the metadata they serve), so nodes prove
#                                                 themselves with the broker certificate, whose
#                                                 CN=kafka-broker maps to the super user
#                                                 User:kafka-broker.
# Material, made with openssl on the first (or a --clean) start, in $SECRETS = node 1's secure/:
#   ca.crt / ca.key     a throwaway test CA (clients: INFERSTREAM_KAFKA_SSL_CAFILE=ca.crt)
#   broker.pem          the nodes' key + certificate (SAN IP:127.0.0.1, DNS:localhost), PEM keystore
#   users/NAME.password SCRAM passwords: admin and INFERSTREAM_KAFKA_USERS ("worker"), written into
#                       the metadata at format time (`kafka-storage format --add-scram`); later
#                       users with `kafka.sh add-user NAME`
#   admin.properties    client config of the admin user for the Kafka tools (--command-config)
# `kafka.sh acl USER ...` grants a user its topics, groups and transactional-id prefixes;
# `kafka.sh client-env USER` prints the INFERSTREAM_* settings a client of that user needs.

SCRAM_MECHANISM=SCRAM-SHA-512
BROKER_PRINCIPAL=kafka-broker

require_secure() {
  [ "$SECURE" = 1 ] || die "$1 needs a cluster started with --secure"
  [ -f "$SECRETS/admin.properties" ] || die "no secure material in $SECRETS: start --secure first"
}

valid_name() { [[ $1 =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; }

new_password() {  # 32 random letters and digits: nothing to escape in JAAS or SCRAM syntax
  local pw=""
  while ((${#pw} < 32)); do pw+=$(head -c 64 /dev/urandom | tr -dc 'A-Za-z0-9'); done
  printf '%s' "${pw:0:32}"
}

password_of() { cat "$SECRETS/users/$1.password"; }

ensure_secrets() {
  [ -f "$SECRETS/broker.pem" ] && [ -f "$SECRETS/admin.properties" ] && return 0
  [ -z "$REC_BROKERS" ] || die "secure material missing in $SECRETS for formatted data: use --clean"
  local users u tmp
  IFS=', ' read -r -a users <<<"${INFERSTREAM_KAFKA_USERS-worker}"
  rm -rf "$SECRETS"
  mkdir -p "$SECRETS/users"
  chmod 700 "$SECRETS"
  tmp=$SECRETS/tmp
  mkdir -p "$tmp"
  (
    umask 077
    cd "$SECRETS"
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=inferstream-test-ca" \
      -keyout ca.key -out ca.crt -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>>"$tmp/openssl.log"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$BROKER_PRINCIPAL" \
      -keyout "$tmp/broker.key" -out "$tmp/broker.csr" 2>>"$tmp/openssl.log"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "extendedKeyUsage=serverAuth,clientAuth" "keyUsage=critical,digitalSignature,keyEncipherment" \
      >"$tmp/broker.ext"
    openssl x509 -req -in "$tmp/broker.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
      -extfile "$tmp/broker.ext" -out "$tmp/broker.crt" 2>>"$tmp/openssl.log"
    # Kafka's PEM keystore: the unencrypted PKCS#8 key, then the chain (no ssl.key.password).
    cat "$tmp/broker.key" "$tmp/broker.crt" ca.crt >broker.pem
    for u in admin "${users[@]}"; do
      valid_name "$u" || die "bad user name '$u' in INFERSTREAM_KAFKA_USERS"
      new_password >"users/$u.password"
    done
    cat >admin.properties <<EOF
security.protocol=SASL_SSL
sasl.mechanism=$SCRAM_MECHANISM
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS/ca.crt
EOF
  ) || { cat "$tmp/openssl.log" >&2 2>/dev/null; die "making the TLS material failed"; }
  rm -rf "$tmp" "$SECRETS/ca.srl"
  log "made a test CA, broker certificate and SCRAM users (admin ${users[*]}) in $SECRETS"
}

scram_format_args() {  # `--add-scram` for every user with a password file (read at format time)
  local f u out=()
  for f in "$SECRETS"/users/*.password; do
    u=$(basename "$f" .password)
    out+=(--add-scram "$SCRAM_MECHANISM=[name=$u,password=$(cat "$f")]")
  done
  echo "${out[*]}"
}

secure_listeners() {  # the listener part of server.properties for a node on ports $1/$2
  cat <<EOF
listeners=SASL_SSL://127.0.0.1:$1,CONTROLLER://127.0.0.1:$2
advertised.listeners=SASL_SSL://127.0.0.1:$1
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL

# TLS everywhere (secure.sh): one broker key and certificate, a test CA as the trust store.
ssl.keystore.type=PEM
ssl.keystore.location=$SECRETS/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$SECRETS/ca.crt
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT

# SASL/SCRAM for clients and between brokers (the brokers log in as the super user admin).
sasl.enabled.mechanisms=$SCRAM_MECHANISM
sasl.mechanism.inter.broker.protocol=$SCRAM_MECHANISM
listener.name.sasl_ssl.$(tr '[:upper:]' '[:lower:]' <<<"$SCRAM_MECHANISM").sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";

# ACLs: a principal without an ACL may do nothing.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:$BROKER_PRINCIPAL
EOF
}

# One Kafka admin tool (org.apache.kafka.tools.<class>) as the admin user, against every node.
# A small heap and the C1 JIT only: these run for a second or two.
kafka_tool() {
  local class=$1
  shift
  "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.level=WARN -cp "$KAFKA_LIBS/*" "org.apache.kafka.tools.$class" \
    --bootstrap-server "$(bootstrap)" --command-config "$SECRETS/admin.properties" "$@"
}

add_user() {  # a SCRAM user made while the cluster runs; password in users/NAME.password
  require_secure add-user
  local user=${1:-} f
  valid_name "$user" || die "usage: add-user NAME (letters, digits, . _ -)"
  f=$SECRETS/users/$user.password
  [ -f "$f" ] || (umask 077 && new_password >"$f")
  kafka_tool ConfigCommand --alter --entity-type users --entity-name "$user" \
    --add-config "$SCRAM_MECHANISM=[password=$(cat "$f")]" >/dev/null \
    || die "could not create SCRAM user $user"
  log "SCRAM user $user ready; password in $f"
}

# acl USER [--topic T]... [--topic-prefix P]... [--group G]... [--group-prefix P]...
#          [--txn-prefix P]... [--allow-create]
# Grants USER: on the topics Read, Write, Describe, DescribeConfigs (+ Create with
# --allow-create, for a client that creates its own topics); on the consumer groups Read and
# Describe; on the transactional ids Write and Describe. Nothing on the cluster: since Kafka 3.0
# an idempotent producer needs only Write on a topic. One AclCommand per resource kind (the
# operations differ), run side by side.
add_acls() {
  require_secure acl
  local user=${1:-} topics=() tprefixes=() groups=() gprefixes=() txns=() create=0
  valid_name "$user" || die "usage: acl USER [--topic T] [--topic-prefix P] [--group G] \
[--group-prefix P] [--txn-prefix P] [--allow-create]"
  shift
  while (($#)); do
    case $1 in
      --topic) topics+=(--topic "${2:?}"); shift ;;
      --topic-prefix) tprefixes+=(--topic "${2:?}"); shift ;;
      --group) groups+=(--group "${2:?}"); shift ;;
      --group-prefix) gprefixes+=(--group "${2:?}"); shift ;;
      --txn-prefix) txns+=(--transactional-id "${2:?}"); shift ;;
      --allow-create) create=1 ;;
      *) die "acl: unknown option $1" ;;
    esac
    shift
  done
  local topic_ops=(--operation Read --operation Write --operation Describe --operation DescribeConfigs)
  ((create)) && topic_ops+=(--operation Create)
  local group_ops=(--operation Read --operation Describe)
  local txn_ops=(--operation Write --operation Describe)
  local out pids=() calls=() k rc=0
  out=$(mktemp -d)
  grant() {  # a label, then the AclCommand arguments; runs in the background
    calls+=("$1")
    kafka_tool AclCommand --add --allow-principal "User:$user" "${@:2}" >"$out/${#calls[@]}" 2>&1 &
    pids+=($!)
  }
  ((${#topics[@]})) && grant topics "${topic_ops[@]}" "${topics[@]}"
  ((${#tprefixes[@]})) && grant topic-prefixes --resource-pattern-type prefixed "${topic_ops[@]}" "${tprefixes[@]}"
  ((${#groups[@]})) && grant groups "${group_ops[@]}" "${groups[@]}"
  ((${#gprefixes[@]})) && grant group-prefixes --resource-pattern-type prefixed "${group_ops[@]}" "${gprefixes[@]}"
  ((${#txns[@]})) && grant transactional-ids --resource-pattern-type prefixed "${txn_ops[@]}" "${txns[@]}"
  ((${#calls[@]})) || die "acl: nothing to grant (give --topic, --group, --txn-prefix ...)"
  for k in "${!pids[@]}"; do
    if ! wait "${pids[$k]}"; then
      log "granting ${calls[$k]} to $user failed:"; cat "$out/$((k + 1))" >&2; rc=1
    fi
  done
  rm -rf "$out"
  ((rc == 0)) || exit 1
  log "granted User:$user: ${calls[*]}"
}

client_env() {  # INFERSTREAM_* lines for a client of USER (`set -a; . <(kafka.sh client-env U)`)
  local user=${1:-}
  echo "INFERSTREAM_BROKER_URL=$(bootstrap)"
  [ "$SECURE" = 1 ] || return 0
  valid_name "$user" || die "usage: client-env USER"
  [ -f "$SECRETS/users/$user.password" ] || die "no SCRAM user $user (kafka.sh add-user $user)"
  cat <<EOF
INFERSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL
INFERSTREAM_KAFKA_SASL_MECHANISM=$SCRAM_MECHANISM
INFERSTREAM_KAFKA_SASL_USERNAME=$user
INFERSTREAM_KAFKA_SASL_PASSWORD_FILE=$SECRETS/users/$user.password
INFERSTREAM_KAFKA_SSL_CAFILE=$SECRETS/ca.crt
EOF
}
