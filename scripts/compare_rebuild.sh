#!/usr/bin/env bash
# Same simulated history through two versions of the engine, then a table-by-table comparison.
#
#   scripts/compare_rebuild.sh before [CODE_DIR]   # default CODE_DIR /tmp/before (a clone of the old code)
#   scripts/compare_rebuild.sh after  [CODE_DIR]   # default CODE_DIR: this checkout (the rebuilt code)
#   scripts/compare_rebuild.sh dump SIDE           # only re-dump /tmp/SIDE-chdb to /tmp/digest-SIDE
#   scripts/compare_rebuild.sh compare             # scripts/table_digest.py compare before after
#
# A side: fresh chdb dir /tmp/SIDE-chdb, fresh BROKERSTREAM_HOME /tmp/SIDE-home, the code of CODE_DIR
# imported through PYTHONPATH (checked: pipelines.__file__ must be under CODE_DIR), the venv of this
# checkout, `brokerstream replay` of the shared simulation (/tmp/sim.jsonl, written once by the first
# side that finds it missing) with the configuration frozen in /tmp/digest-config (a copy of
# examples/brokerstream.yaml with its commissions.yaml and rules.yaml: exposure, commissions and
# rules all on), timed, then dumped to /tmp/digest-SIDE. Override with EVENTS, SEED, SIM, CONFIG_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-$HERE/.venv/bin/python}"
BROKERSTREAM="$(dirname "$PY")/brokerstream"
EVENTS="${EVENTS:-300000}"
SEED="${SEED:-11}"
SIM="${SIM:-/tmp/sim.jsonl}"
TRUTH="${TRUTH:-/tmp/truth.jsonl}"
CONFIG_DIR="${CONFIG_DIR:-/tmp/digest-config}"
CONFIG="$CONFIG_DIR/brokerstream.yaml"
DATABASE=brokerstream

freeze_config() {
  # the example configuration, frozen once so that both sides read the same one
  if [ ! -f "$CONFIG" ]; then
    mkdir -p "$CONFIG_DIR"
    cp "$1/examples/brokerstream.yaml" "$1/examples/commissions.yaml" "$CONFIG_DIR/"
    # the rules file (risk_rules/default_rules.yaml; examples/rules.yaml in older trees) would
    # otherwise default to CODE_DIR's: pin a copy, and the reference data by absolute path
    if [ -f "$1/risk_rules/default_rules.yaml" ]; then rules="$1/risk_rules/default_rules.yaml"
    else rules="$1/examples/rules.yaml"; fi
    cp "$rules" "$CONFIG_DIR/rules.yaml"
    "$PY" - "$CONFIG" "$1/examples" <<'PY'
import sys, pathlib, yaml
config, base = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
doc = yaml.safe_load(config.read_text())
rules = doc.setdefault("rules", {})
for holder, key in [(rules, "geoip"), (rules.get("sanctions", {}), "ofac_sdn"), (rules.get("sanctions", {}), "ofac_alt")]:
    if holder.get(key):
        holder[key] = str((base / holder[key]).resolve())
rules["file"] = "rules.yaml"
config.write_text(yaml.safe_dump(doc, sort_keys=False))
PY
  fi
}

check_code() {  # $1 = code dir: that tree's modules are the ones imported
  local where
  where="$(PYTHONPATH="$1" "$PY" -c 'import pipelines, brokerstream; print(pipelines.__file__); print(brokerstream.__file__)')"
  echo "$where"
  case "$where" in
    "$1"/pipelines/__init__.py*) ;;
    *) echo "error: pipelines is not imported from $1" >&2; exit 1 ;;
  esac
}

dump() {  # $1 = side
  rm -rf "/tmp/digest-$1"
  "$PY" "$HERE/scripts/table_digest.py" dump --dsn "chdb:///tmp/$1-chdb" --database "$DATABASE" \
    --out "/tmp/digest-$1"
}

run_side() {  # $1 = side, $2 = code dir
  local side="$1" code="$2"
  code="$(cd "$code" && pwd)"
  echo "== $side: code $code ($(git -C "$code" log --oneline -1 2>/dev/null || echo 'not a git tree'))"
  [ -n "$(git -C "$code" status --porcelain --untracked-files=no 2>/dev/null)" ] && echo "   (with uncommitted changes)"
  check_code "$code"
  freeze_config "$code"
  if [ ! -f "$SIM" ]; then
    echo "== simulating $EVENTS events, seed $SEED -> $SIM"
    PYTHONPATH="$code" BROKERSTREAM_HOME="/tmp/$side-home" \
      "$BROKERSTREAM" simulate --events "$EVENTS" --seed "$SEED" --out "$SIM" --truth "$TRUTH" \
      --config "$CONFIG"
  fi
  sha256sum "$SIM"
  rm -rf "/tmp/$side-chdb" "/tmp/$side-home"
  mkdir -p "/tmp/$side-home"
  echo "== replay ($side)"
  local start end
  start=$(date +%s.%N)
  PYTHONPATH="$code" BROKERSTREAM_HOME="/tmp/$side-home" BROKERSTREAM_CLICKHOUSE="chdb:///tmp/$side-chdb" \
    "$BROKERSTREAM" replay "$SIM" --config "$CONFIG"
  end=$(date +%s.%N)
  printf '== replay (%s) took %.1f s\n' "$side" "$(echo "$end - $start" | bc)" | tee "/tmp/$side-replay-time.txt"
  dump "$side"
}

case "${1:-}" in
  before) run_side before "${2:-/tmp/before}" ;;
  after) run_side after "${2:-$HERE}" ;;
  dump) dump "${2:?side}" ;;
  compare) "$PY" "$HERE/scripts/table_digest.py" compare /tmp/digest-before /tmp/digest-after ;;
  *) sed -n '2,15p' "$0"; exit 2 ;;
esac
