#!/bin/sh
# Aina vs Orthanc with the same client and the same bytes: the one command
# behind the table in docs/benchmarks.md.
#
#   benches/compare.sh            # full run (10,000 QIDO studies each; ~15 min)
#   benches/compare.sh --quick    # smoke run; extra flags go to benches/load.rs
#
# Needs the Debian packages `orthanc` and `orthanc-dicomweb`, and curl. Builds
# Aina and the load client in release, then for each server in turn: start it
# on fresh storage, run the client against it with --server-pid, stop it.
# Reports and server logs land in target/load/ (aina.json, orthanc.json,
# compare.md, *.log). The client binary is built once and run directly, so
# both servers are measured by the same client even if sources change.
set -eu
cd "$(dirname "$0")/.."

out=target/load
mkdir -p "$out"
work=$(mktemp -d /tmp/aina-compare.XXXXXX)
aina_addr=127.0.0.1:18080
pids=""
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

cargo build --release --bin aina
cp target/release/aina "$work/aina"
client=$(cargo bench --bench load --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\/load-[^"]*\)".*/\1/p' | tail -1)
[ -x "$client" ] || { echo "could not build the load client" >&2; exit 1; }
echo "== client: $client"
echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load: $(uptime | sed 's/.*load average: //')"

# Aina, fresh data directory (DIMSE on an ephemeral port).
"$work/aina" serve --data "$work/aina-data" --http "$aina_addr" --dicom 127.0.0.1:0 \
    >"$out/aina.log" 2>&1 &
aina=$!
pids="$aina"
i=0
until curl -fs -o /dev/null "http://$aina_addr/healthz"; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { echo "aina did not start, see $out/aina.log" >&2; exit 1; }
    sleep 0.1
done
"$client" --root "http://$aina_addr/dicomweb" --name aina \
    --server-pid "$aina" --json "$out/aina.json" "$@"
kill "$aina"
wait "$aina" 2>/dev/null || true
du -sh "$work/aina-data" | sed 's/^/== aina storage: /'

# Orthanc, fresh storage and index.
orthanc=$(ORTHANC_BENCH_DIR="$work/orthanc" benches/orthanc/run.sh)
pids="$pids $orthanc"
"$client" --root http://127.0.0.1:8042/dicom-web --name orthanc \
    --server-pid "$orthanc" --json "$out/orthanc.json" "$@"
kill "$orthanc"
while kill -0 "$orthanc" 2>/dev/null; do sleep 0.2; done
du -sh "$work/orthanc/storage" | sed 's/^/== orthanc storage: /'
cp "$work/orthanc/orthanc.log" "$out/orthanc.log"

"$client" --compare "$out/aina.json" "$out/orthanc.json" >"$out/compare.md"
cat "$out/compare.md"
