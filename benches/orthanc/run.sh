#!/bin/sh
# Start Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`) with
# benches/orthanc/orthanc.json in the background, on fresh storage, wait until
# its DICOMweb root answers, and print its PID on stdout (logs go to
# $ORTHANC_BENCH_DIR/orthanc.log).
#
#   ORTHANC_BENCH_DIR=/tmp/orthanc-bench benches/orthanc/run.sh   # → PID
#   curl http://127.0.0.1:8042/dicom-web/studies
#   kill PID
#
# ORTHANC_BENCH_DIR defaults to a new directory from mktemp; an existing one is
# emptied first so every run starts from an empty archive.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
ORTHANC_BENCH_DIR=${ORTHANC_BENCH_DIR:-$(mktemp -d /tmp/orthanc-bench.XXXXXX)}
export ORTHANC_BENCH_DIR
rm -rf "$ORTHANC_BENCH_DIR/storage" "$ORTHANC_BENCH_DIR/index"
mkdir -p "$ORTHANC_BENCH_DIR/storage" "$ORTHANC_BENCH_DIR/index"

orthanc=$(command -v Orthanc || echo /usr/sbin/Orthanc)
"$orthanc" "$here/orthanc.json" >"$ORTHANC_BENCH_DIR/orthanc.log" 2>&1 &
pid=$!

i=0
until curl -fs -o /dev/null http://127.0.0.1:8042/dicom-web/studies?limit=1; do
    i=$((i + 1))
    if [ "$i" -ge 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "Orthanc did not come up; see $ORTHANC_BENCH_DIR/orthanc.log" >&2
        tail -20 "$ORTHANC_BENCH_DIR/orthanc.log" >&2 || true
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 0.1
done
echo "$pid"
