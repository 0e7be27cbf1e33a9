#!/usr/bin/env bash
# One command from a fresh Debian machine to a model answering through the
# gateway: engine, swarm, images (none pulled), stack, the iris example.
# Idempotent: a second run checks everything and changes nothing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$AIART_ROOT/hack/stack.sh"

apt_install curl ca-certificates
ensure_engine
ensure_swarm
ensure_venv
log "building images (each only once: tags are content hashes)"
images=$("$AIART_ROOT/hack/images.sh" build_all)
set -a; eval "$images"; set +a
deploy_stack

example="$AIART_ROOT/examples/iris"
[ -f "$example/model.pkl" ] || "$AIART_ROOT/.venv/bin/python" "$example/train.py" >/dev/null
docker config inspect iris-model-1 >/dev/null 2>&1 \
  || docker config create iris-model-1 "$example/model.pkl" >/dev/null
docker config inspect iris-1 >/dev/null 2>&1 \
  || docker config create --label aiart.model=iris iris-1 "$example/manifest.yaml" >/dev/null
log "waiting for the iris model to be Ready"
wait_ready iris-1 300

# A key for the example, made once and kept where only this user reads it.
key_file="${XDG_CONFIG_HOME:-$HOME/.config}/aiart/example.key"
aiart="$AIART_ROOT/.venv/bin/aiart"
if [ ! -s "$key_file" ] || ! "$aiart" keys ls | grep -q "^$(cut -d_ -f2 "$key_file") "; then
  "$aiart" keys revoke example >/dev/null 2>&1 || true
  mkdir -p "$(dirname "$key_file")"
  (umask 077; "$aiart" keys create example --model iris 2>/dev/null > "$key_file")
  log "created an API key for the example: $key_file"
fi
endpoint=$(docker config inspect iris-1 --format '{{index .Spec.Labels "aiart.status.endpoint"}}')
# The local CA's certificate, when the gateway's certificate is the local CA's.
call="curl -s ${AIART_TLS_CA:+--cacert $AIART_TLS_CA }-H \"X-API-Key: \$(cat $key_file)\" -H 'Content-Type: application/json' -d @examples/iris/request.json $endpoint/v2/models/iris/infer"
log "the iris model is Ready at $endpoint"
echo
echo "  $call"
echo
# A new key reaches the auth service within about a second.
for _ in $(seq 20); do
  answer=$(cd "$AIART_ROOT" && eval "$call")
  case "$answer" in *'"error"'*) sleep 0.5 ;; *) break ;; esac
done
echo "$answer"
echo
