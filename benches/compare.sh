#!/bin/sh
# Aina vs Orthanc with the same client and the same bytes: the one command
# behind the table in docs/benchmarks.md.
#
#   benches/compare.sh            # full run (~10k QIDO studies each; 15–30 min)
#   benches/compare.sh --quick    # smoke run; extra flags go to benches/load.rs
#
# Needs the Debian packages `orthanc` and `orthanc-dicomweb` and curl. Builds
# Aina in release, then for each server in turn: start it on fresh storage,
# run `cargo bench --bench load` against it with --server-pid, stop it. Reports
# land in target/load/ (aina.json, orthanc.json, compare.md).
set -eu
cd "$(dirname "$0")/.."

out=target/load
mkdir -p "$out"
work=$(mktemp -d /tmp/aina-compare.XXXXXX)
aina_addr=127.0.0.1:18080
pids=""
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

cargo build --release --bin aina
cargo bench --bench load --no-run

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load: $(uptime | sed 's/.*load average: //')"

# Aina, fresh data directory.
target/release/aina serve --data "$work/aina" --http "$aina_addr" >"$work/aina.log" 2>&1 &
aina=$!
pids="$aina"
i=0
until curl -fs -o /dev/null "http://$aina_addr/healthz"; do
    i=$((i + 1))
    [ "$i" -lt 600 ] || { echo "aina did not start, see $work/aina.log" >&2; exit 1; }
    sleep 0.1
done
cargo bench --bench load -- --root "http://$aina_addr/dicomweb" --name aina \
    --server-pid "$aina" --json "$out/aina.json" "$@"
kill "$aina"
wait "$aina" 2>/dev/null || true
du -sh "$work/aina" | sed 's/^/== aina storage: /'

# Orthanc, fresh storage and index.
orthanc=$(ORTHANC_BENCH_DIR="$work/orthanc" benches/orthanc/run.sh)
pids="$pids $orthanc"
cargo bench --bench load -- --root http://127.0.0.1:8042/dicom-web --name orthanc \
    --server-pid "$orthanc" --json "$out/orthanc.json" "$@"
kill "$orthanc"
while kill -0 "$orthanc" 2>/dev/null; do sleep 0.2; done
du -sh "$work/orthanc" | sed 's/^/== orthanc storage: /'

cargo bench --bench load -- --compare "$out/aina.json" "$out/orthanc.json" | tee "$out/compare.md"
rm -rf "$work"
