#!/usr/bin/env bash
# The local demo stack in the foreground: the identity provider (npm oidc-provider) on
# 127.0.0.1:4000, the demo MCP server (official TypeScript SDK) in two versions — stable `demo-a`
# on 127.0.0.1:8101, canary `demo-b` on 127.0.0.1:8102 — and Envoy with mcp-warden on
# 127.0.0.1:10000 (admin 9901), which sends the `hr` group and 10 % of the other users to the
# canary and keeps every session on its version. Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

for port in 10000 9901 8101 8102 4000; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is already in use; stop what runs there first" >&2; exit 1
  fi
done

(cd integration-tests/stack && exec node idp/idp.mjs --port 4000 --issuer http://127.0.0.1:4000 \
  --attestation-key idp/demo-keys/attestation-key.pem) >/dev/null &
pids+=($!)
node integration-tests/stack/servers/demo-server.mjs --port 8101 --name demo-a >/dev/null &
pids+=($!)
node integration-tests/stack/servers/demo-server.mjs --port 8102 --name demo-b >/dev/null &
pids+=($!)
# envoy/demo.yaml reads its secrets from Envoy's environment ({"env": …} in the plugin
# configuration), never from the file: here the demo IdP's STS client secret.
WARDEN_STS_CLIENT_SECRET="${WARDEN_STS_CLIENT_SECRET:-mcp-warden-secret}" \
.venv/bin/envoy -c envoy/demo.yaml --concurrency 2 --log-level warn --component-log-level wasm:info \
  --log-format '[envoy] [%l] %v' &
pids+=($!)

for _ in $(seq 1 100); do
  if curl -fs 127.0.0.1:9901/ready >/dev/null 2>&1 && curl -fs 127.0.0.1:8101/healthz >/dev/null 2>&1 \
     && curl -fs 127.0.0.1:8102/healthz >/dev/null 2>&1 && curl -fs 127.0.0.1:4000/healthz >/dev/null 2>&1; then
    cat <<'MSG'

demo: ready. MCP endpoint: http://127.0.0.1:10000/mcp   IdP: http://127.0.0.1:4000
  tokens: cd integration-tests/stack
          TOKEN=$(node idp/get-token.mjs user alice)
          AGENT_TOKEN=$(node idp/get-token.mjs agent agent-claude --user alice)
  call:   node clients/ts-client.mjs --url http://127.0.0.1:10000/mcp \
            --header "Authorization: Bearer $TOKEN" --header "x-agent-token: $AGENT_TOKEN"
  canary: carol (group hr) lands on demo-b, the others on demo-a (tool `whoami` says which);
          session ids are sealed and only work for the user and agent that opened them.
  see README.md for more (MCP Inspector, refused requests).
Ctrl-C stops everything.
MSG
    wait
    exit 0
  fi
  sleep 0.2
done
echo "demo: the stack did not become ready within 20 s" >&2
exit 1
