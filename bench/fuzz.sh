#!/usr/bin/env bash
# Fuzz the SIP and media parsers with cargo-fuzz (libFuzzer), each target for a bounded time.
#
#   bench/fuzz.sh            # 60 s per target
#   bench/fuzz.sh 300        # 300 s per target
#   bench/fuzz.sh -runs=N    # N executions per target
#   TARGETS=sdp_rtp bench/fuzz.sh 30
#
# Seeds are made at run time (never committed) from crates/sip/tests/torture: the whole
# messages for sip_message, their SDP bodies and a few RTP packets for sdp_rtp. A crash
# leaves its input in fuzz/artifacts/<target>/ and fails the script. Runs at nice 19.
set -euo pipefail
cd "$(dirname "$0")/.."

limit="${1:-60}"
case "$limit" in
  -runs=*) budget=("$limit") ;;
  *[!0-9]*|"") echo "usage: $0 [SECONDS | -runs=N]" >&2; exit 2 ;;
  *) budget=("-max_total_time=$limit") ;;
esac
targets=(${TARGETS:-sip_message sdp_rtp})

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
rustup toolchain list | grep -q '^nightly' || { echo "cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }

torture=crates/sip/tests/torture
mkdir -p fuzz/corpus/sip_message fuzz/corpus/sdp_rtp
cp "$torture"/valid/*.sip "$torture"/invalid/*.sip fuzz/corpus/sip_message/
python3 - "$torture" fuzz/corpus/sdp_rtp <<'PY'
import pathlib, struct, sys
torture, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for path in sorted(torture.glob("*/*.sip")):
    head, sep, body = path.read_bytes().partition(b"\r\n\r\n")
    if body.startswith(b"v=0"):
        (out / f"{path.stem}.sdp").write_bytes(body)
def rtp(first, pt, seq, ts, payload):
    return struct.pack("!BBHII", first, pt, seq, ts, 0x1234) + payload
(out / "pcmu.rtp").write_bytes(rtp(0x80, 0x80, 1, 160, b"\xff" * 160))
(out / "dtmf.rtp").write_bytes(rtp(0x80, 101, 2, 320, b"\x05\x0a\x03\x20"))
(out / "ext_pad.rtp").write_bytes(rtp(0xB1, 0, 3, 480, b"\x09\x09\x09\x09\xbe\xde\x00\x01\x07\x07\x07\x07\x2a\x2b\x00\x02"))
PY

status=0
for target in "${targets[@]}"; do
  echo "== $target (${budget[*]})"
  log="fuzz/artifacts/$target.log"
  mkdir -p "fuzz/artifacts/$target"
  if ! nice -n 19 cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" -- \
      "${budget[@]}" -max_len=65536 -print_final_stats=1 2>&1 | tee "$log" | grep -E '^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|stat::number_of_executed_units|Done )'; then
    :
  fi
  if grep -qE 'ERROR: libFuzzer|panicked|SUMMARY: ' "$log"; then
    echo "!! $target found a crash: see $log and fuzz/artifacts/$target/" >&2
    status=1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  echo "$target: $execs executions"
done
exit $status
