#!/usr/bin/env bash
# Side-by-side timing of multihead against PyTorch (../shared/bench/torch_mha_ref.py)
# on the issue-5 shapes, float32, in one run on one machine. For every shape
# and causal setting, rounds alternate: ours, then each torch implementation
# (einsum, fused, sdpa, and native for non-causal forward), each in a fresh
# process. The ratio per shape and mode is torch's fastest implementation
# (median ms) over ours (median ms); with several rounds, the median over
# rounds (compare-summary.py prints the table from the records, with the lowest
# and highest per-round speed-up).
#
# --min-time is the seconds of timed calls per process (3 by default). On a shared
# VM the machine slows down for spells of a fraction of a second to a few seconds,
# and one second at 32/128/256/8/32 is only ~50 calls: a single spell then moved
# medians by a third or more (bench/README.md, stop 14's runs). Three seconds per
# process makes a spell a smaller part of each median, for both sides alike.
#
# Needs: multihead installed (pass its library with --lib or R_LIBS), Debian's
# python3-torch and libopenblas0-openmp (apt-get install -y python3-torch
# python3-numpy libopenblas0-openmp), /usr/bin/python3.
#
# Usage: bench/compare-torch.sh [--lib DIR] [--threads 2] [--rounds 1] [--min-time 3]
#          [--torch-ref PATH] [--out FILE.jsonl] [--shapes "B,T,E,H,Kd ..."] [--causal "0 1"]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lib=""
threads=2
rounds=1
min_time=3
torch_ref="${here}/../../shared/bench/torch_mha_ref.py"
[ -f "$torch_ref" ] || torch_ref="${here}/../shared/bench/torch_mha_ref.py"
out="$(mktemp /tmp/mha-compare-XXXXXX.jsonl)"
shapes="32,128,256,8,32 8,512,512,8,64 2,2048,256,4,64 1,4096,128,2,64"
causals="0 1"
while [ $# -gt 0 ]; do
  case "$1" in
    --lib) lib="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --torch-ref) torch_ref="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --shapes) shapes="$2"; shift 2 ;;
    --causal) causals="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$torch_ref" ] || { echo "torch_mha_ref.py not found; pass --torch-ref" >&2; exit 2; }
libarg=()
[ -n "$lib" ] && libarg=(--lib "$lib")
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; threads=$threads; rounds=$rounds"
echo "# records: $out"
for round in $(seq 1 "$rounds"); do
  for shape in $shapes; do
    IFS=, read -r B T E H Kd <<< "$shape"
    for causal in $causals; do
      cflag=(); [ "$causal" = 1 ] && cflag=(--causal)
      Rscript "$here/mha.R" "${libarg[@]}" --B "$B" --T "$T" --E "$E" --H "$H" --Kd "$Kd" \
        --threads "$threads" --min-time "$min_time" --jsonl "$out" "${cflag[@]}"
      impls="einsum fused sdpa"
      [ "$causal" = 0 ] && impls="$impls native"
      for impl in $impls; do
        /usr/bin/python3 "$torch_ref" --B "$B" --T "$T" --E "$E" --H "$H" --Kd "$Kd" \
          --threads "$threads" --impl "$impl" --min-time "$min_time" --jsonl "$out" \
          --tag "round$round" "${cflag[@]}" 2>/dev/null || echo "torch $impl failed for $shape causal=$causal"
      done
    done
  done
done

echo
/usr/bin/python3 "$here/compare-summary.py" "$out" --threads "$threads"
