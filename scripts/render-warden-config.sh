#!/usr/bin/env bash
# Renders the ECDS file that envoy/hot-reload.yaml watches (envoy/ecds/mcp_warden.yaml): the
# mcp-warden wasm filter with the plugin configuration of envoy/demo.yaml, its "policy" replaced
# by `warden compile --compact <bundle>`. The result is validated with `warden check` (the
# filter's own configuration code) and then replaces the output file atomically: written to a
# temporary file in the same directory, then renamed, so Envoy never reads a half-written file.
#
#   scripts/render-warden-config.sh [--bundle policies/enterprise/bundle.toml]
#        [--template envoy/demo.yaml] [--out envoy/ecds/mcp_warden.yaml]
#        [--wasm target/wasm32-wasip1/release/mcp_warden.wasm]
#   scripts/render-warden-config.sh --plugin-json FILE [--no-check] [--out …] [--wasm …]
#   any of them with [--allow-open] [--allow-example-secrets]
#
# --plugin-json FILE  use this whole plugin configuration instead of template + bundle
# --no-check          skip `warden check` (to hand Envoy a configuration it must reject)
# --allow-open        render a configuration with "mode": "open" (no identity or no policy);
#                     also WARDEN_ALLOW_OPEN=1. Without it an open configuration is refused,
#                     with or without --no-check
# --allow-example-secrets  accept the keys and secrets of the shipped examples (`warden check`
#                     refuses them otherwise): for the demo template only
#
# The defaults are relative to the repository root; paths given as arguments are relative to the
# current directory. The warden CLI is $WARDEN if set (a path to the binary), else
# `cargo run -q -p mcp-warden-cli --` in the repository. Exit status: 0 written, 1 invalid
# bundle or configuration (nothing written), 2 usage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CALLER="$PWD"
cd "$ROOT"

BUNDLE=policies/enterprise/bundle.toml
TEMPLATE=envoy/demo.yaml
OUT=envoy/ecds/mcp_warden.yaml
WASM=target/wasm32-wasip1/release/mcp_warden.wasm
PLUGIN_JSON=
CHECK=1
ALLOW_OPEN="${WARDEN_ALLOW_OPEN:-0}"
CHECK_FLAGS=()

usage() {
  # The comment block at the top of this file.
  sed -n '2,/^[^#]/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# An argument path, made absolute (relative to the caller's directory).
arg_path() {
  case "$1" in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$CALLER" "$1" ;;
  esac
}

while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE="$(arg_path "${2:?}")"; shift 2 ;;
    --template) TEMPLATE="$(arg_path "${2:?}")"; shift 2 ;;
    --out) OUT="$(arg_path "${2:?}")"; shift 2 ;;
    --wasm) WASM="$(arg_path "${2:?}")"; shift 2 ;;
    --plugin-json) PLUGIN_JSON="$(arg_path "${2:?}")"; shift 2 ;;
    --no-check) CHECK=0; shift ;;
    --allow-open) ALLOW_OPEN=1; shift ;;
    --allow-example-secrets) CHECK_FLAGS+=(--allow-example-secrets); shift ;;
    -h|--help) usage ;;
    *) echo "render-warden-config: unknown argument $1" >&2; usage ;;
  esac
done

warden() {
  if [ -n "${WARDEN:-}" ]; then
    "$WARDEN" "$@"
  else
    cargo run -q -p mcp-warden-cli -- "$@"
  fi
}

case "$ALLOW_OPEN" in
  1) CHECK_FLAGS+=(--allow-open) ;;
  0|"") ALLOW_OPEN=0 ;;
  *) echo "render-warden-config: WARDEN_ALLOW_OPEN must be 1 or 0, got '$ALLOW_OPEN'" >&2; exit 2 ;;
esac

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ -z "$PLUGIN_JSON" ]; then
  if ! warden compile --compact "$BUNDLE" >"$WORK/policy.json"; then
    echo "render-warden-config: $BUNDLE is not a valid bundle; $OUT left unchanged" >&2
    exit 1
  fi
fi

# Python (stdlib) for the JSON and the YAML quoting.
python3 - "$TEMPLATE" "$WORK/policy.json" "$PLUGIN_JSON" "$WASM" "$BUNDLE" "$ALLOW_OPEN" "$OUT" >"$WORK/mcp_warden.yaml" <<'PY'
import json, sys

template, policy_file, plugin_json, wasm, bundle, allow_open, out = sys.argv[1:8]
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"

def template_plugin_config(path):
    """The single-quoted `value:` after the StringValue @type line (the form demo.yaml uses)."""
    after_type = False
    for line in open(path, encoding="utf-8"):
        t = line.strip()
        if after_type and t.startswith("value:"):
            v = t[len("value:"):].strip()
            if not (v.startswith("'") and v.endswith("'")):
                sys.exit(f"{path}: the plugin value is not a one-line single-quoted string")
            return json.loads(v[1:-1].replace("''", "'"))
        after_type = STRING_VALUE in t
    sys.exit(f"{path}: no plugin configuration (value: '...') found")

if plugin_json:
    # Kept as given (also when it is not valid: --no-check hands Envoy what it must refuse).
    text = open(plugin_json, encoding="utf-8").read().strip()
    source = f"plugin configuration {plugin_json}"
else:
    config = template_plugin_config(template)
    with open(policy_file, encoding="utf-8") as f:
        config["policy"] = json.load(f)
    text = json.dumps(config, separators=(",", ":"), ensure_ascii=False)
    source = f"{template} with the policy of {bundle}"
# Open mode (no identity or no policy) only when asked, checked or not: a valid open
# configuration is one Envoy would load.
try:
    parsed = json.loads(text)
except ValueError:
    parsed = None
if isinstance(parsed, dict) and parsed.get("mode") == "open" and allow_open != "1":
    sys.exit(f"render-warden-config: {source} says \"mode\": \"open\" (no identity or no policy "
             f"is then enforced); pass --allow-open or set WARDEN_ALLOW_OPEN=1 to render it; {out} left unchanged")
if "\n" in text:
    text = json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
value = "'" + text.replace("'", "''") + "'"


def env_names(node):
    """Every variable a secret of the configuration is read from ({"env": "NAME"})."""
    if isinstance(node, dict):
        if len(node) == 1 and isinstance(node.get("env"), str):
            return [node["env"]]
        return [n for v in node.values() for n in env_names(v)]
    if isinstance(node, list):
        return [n for v in node for n in env_names(v)]
    return []


names = sorted(set(env_names(json.loads(text))))
env_line = ""
if names:
    env_line = ("\n        # Secrets come from Envoy's environment; only these names are passed to the filter."
                "\n        environment_variables: { host_env_keys: [" + ", ".join(names) + "] }")

print(f"""# ECDS resource for envoy/hot-reload.yaml: the mcp-warden filter, as Envoy loads it at startup
# and again whenever this file is replaced (watched directory). Generated by
# scripts/render-warden-config.sh from {source}.
# Do not edit by hand: edit the bundle and render again (validated, atomic replace).
resources:
- "@type": type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig
  name: mcp_warden
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
    config:
      name: mcp_warden
      root_id: mcp_warden
      # A crashed or unconfigurable plugin rejects traffic instead of skipping the filter.
      failure_policy: FAIL_CLOSED
      # Lets on_http_request_headers return Pause (StopIteration) while the body is still
      # delivered, so the filter can decide on the body and then set headers.
      allow_on_headers_stop_iteration: true
      vm_config:
        vm_id: mcp_warden
        runtime: envoy.wasm.runtime.v8{env_line}
        code:
          local:
            filename: {wasm}
      configuration:
        "@type": {STRING_VALUE}
        value: {value}""")
PY

if [ "$CHECK" = 1 ] && ! warden check "${CHECK_FLAGS[@]}" "$WORK/mcp_warden.yaml" >&2; then
  echo "render-warden-config: the rendered configuration is invalid; $OUT left unchanged" >&2
  exit 1
fi

# Atomic replace: a temporary file in the output's directory (same file system), renamed.
DIR="$(dirname "$OUT")"
mkdir -p "$DIR"
TMP="$(mktemp "$DIR/.mcp_warden.XXXXXX")"
cat "$WORK/mcp_warden.yaml" >"$TMP"
chmod 0644 "$TMP"
mv -f "$TMP" "$OUT"
echo "render-warden-config: wrote $OUT" >&2
