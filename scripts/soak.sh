#!/usr/bin/env bash
# The soak (issue 14 item 3): the release binary at saturation for SECONDS (default 600) on
# the instance, token and scheduled-events endpoints from several VMs at once, while the
# control API writes VMs and events and a fault rule toggles (examples/soak_load.rs); the
# server's RSS sampled every second. At the end: status counts, unexpected statuses, every
# WARN/ERROR the server logged, and the RSS curve as target/soak/rss.png.
#
#   scripts/soak.sh [SECONDS]        # SOAK_VMS=8 SOAK_CONNECTIONS=4 by default
#
# Loopback only (VMs on 127.4.0.1..N). Exits 1 on an unexpected status, a logged error or
# warning, or RSS that grew by more than SOAK_RSS_GROWTH_PERCENT (default 10) from the end of
# the first minute (warm-up: documents rendered, caches filled) to the end.
set -euo pipefail

DURATION=${1:-600}
VMS=${SOAK_VMS:-8}
CONNECTIONS=${SOAK_CONNECTIONS:-4}
GROWTH=${SOAK_RSS_GROWTH_PERCENT:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/target/soak
cd "$ROOT"

log() { printf 'soak: %s\n' "$*" >&2; }

CARGO_INCREMENTAL=0 cargo build --release --quiet --bin azimds --example soak_load
mkdir -p "$OUT"
work=$(mktemp -d /tmp/azimds-soak-XXXXXX)
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# VM i calls from 127.4.0.i, with a system-assigned identity (examples/soak_load.rs writes the
# same definitions back).
{
    echo "vms:"
    for ((i = 1; i <= VMS; i++)); do
        printf '  - id: vm-%d\n    callers: [127.4.0.%d]\n' "$i" "$i"
        printf '    instance: {compute: {name: vm-%d, location: westeurope}}\n' "$i"
        printf '    identities: {tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47, systemAssigned: {clientId: 5a1e8c3b-6f2d-4b7a-9e0c-%012x, objectId: 6b2f9d4c-7a3e-4c8b-8f1d-%012x}}\n' "$i" "$i"
    done
} >"$work/vms.yaml"

# Unthrottled, so that the only non-200 answers are the fault rule's; info-level log.
AZIMDS_LOG=info target/release/azimds serve \
    --listen 127.0.0.1:0 --control 127.0.0.1:0 --data "$work/data" \
    --callers source-address --vms "$work/vms.yaml" \
    --rate-limit 0 --identity-rate-limit 0 --identity-concurrency 0 \
    --ready-file "$work/ready.json" >/dev/null 2>"$OUT/server.log" &
server_pid=$!
for _ in $(seq 100); do [[ -s $work/ready.json ]] && break; sleep 0.1; done
[[ -s $work/ready.json ]] || { log "the server did not get ready"; cat "$OUT/server.log" >&2; exit 1; }
read -r guest control token_file < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["guest"][0], r["control"], r["token_file"])' "$work/ready.json")
log "azimds pid $server_pid, guest $guest, control $control; $VMS VMs x $CONNECTIONS connections, ${DURATION}s"

status=0
target/release/examples/soak_load --guest "$guest" --control "$control" \
    --token-file "$token_file" --pid "$server_pid" --vms "$VMS" \
    --connections "$CONNECTIONS" --seconds "$DURATION" --out "$OUT" >"$OUT/summary.stdout" || status=$?
alive=1; kill -0 "$server_pid" 2>/dev/null || alive=0
kill -TERM "$server_pid"
wait "$server_pid" || { log "the server exited with $? at SIGTERM"; status=1; }
server_pid=
[[ $alive == 1 ]] || { log "the server died during the soak"; status=1; }
[[ $status == 0 ]] || log "unexpected statuses (summary.json)"

problems=$(grep -cE ' (WARN|ERROR) ' "$OUT/server.log" || true)
if [[ $problems != 0 ]]; then
    log "the server logged $problems WARN/ERROR lines:"; grep -E ' (WARN|ERROR) ' "$OUT/server.log" | head -20 >&2
    status=1
fi

# The RSS curve, and the growth check: Debian's python3 with Debian's matplotlib, installed
# if missing (apt-get update first only when the package is not known yet).
PY=/usr/bin/python3
if ! "$PY" -c 'import matplotlib' 2>/dev/null; then
    log "installing python3-matplotlib"
    apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null; }
fi
"$PY" - "$OUT" "$GROWTH" <<'EOF' || status=1
import csv, json, sys
out, growth = sys.argv[1], float(sys.argv[2])
rows = list(csv.DictReader(open(f"{out}/rss.csv")))
t = [float(r["seconds"]) for r in rows]
rss = [int(r["rss_kib"]) / 1024 for r in rows]
rate = [int(r["answered_per_second"]) for r in rows]
fault = [int(r["fault_on"]) for r in rows]
warm = next((i for i, s in enumerate(t) if s >= min(60, t[-1] / 2)), 0)
grew = (rss[-1] - rss[warm]) / rss[warm] * 100
summary = json.load(open(f"{out}/summary.json"))
summary["rss_mib"] = {"start": rss[0], "after_warmup": rss[warm], "end": rss[-1], "max": max(rss),
                      "growth_after_warmup_percent": round(grew, 2)}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
ax.plot(t, rss, color="tab:blue", label="azimds RSS (MiB)")
ax.set_xlabel("seconds"); ax.set_ylabel("RSS (MiB)", color="tab:blue")
ax.set_ylim(0, max(rss) * 1.3)
ax2 = ax.twinx()
ax2.plot(t, rate, color="tab:gray", alpha=0.35, linewidth=0.7, label="answers/s")
ax2.set_ylabel("guest answers per second", color="tab:gray"); ax2.set_ylim(0, max(rate) * 1.15)
for i in range(1, len(t)):
    if fault[i]:
        ax.axvspan(t[i - 1], t[i], color="tab:red", alpha=0.06, linewidth=0)
ax.set_title(f"azimds soak: {summary['vms']} VMs x {summary['connections_per_vm']} connections, "
             f"{summary['answered_per_second']:.0f} answers/s; shaded: fault rule on")
fig.tight_layout(); fig.savefig(f"{out}/rss.png")
if grew > growth:
    print(f"soak: RSS grew {grew:.1f}% after warm-up (limit {growth}%)", file=sys.stderr)
    sys.exit(1)
EOF
log "results in $OUT (summary.json, rss.csv, rss.png, server.log); exit $status"
exit "$status"
