#!/usr/bin/env bash
# Whole-model comparison of multihead against PyTorch eager (float32, CPU):
# the training step of the keras3-style encoder models (cases a, b, c),
# predict() (case d), peak RSS of every process, and grouped-query attention
# forward / forward+backward (case gqa) at compare-torch.sh's four shapes,
# causal and not. Each measurement is a fresh process (bench/train-step.R for
# ours, bench/train_step_torch.py for torch, one implementation each:
# mha / sdpa for the models, sdpa / einsum for grouped-query attention).
# Rounds alternate: odd rounds run ours first, even rounds torch first.
# compare-models-summary.py prints the table: per case, our median over
# rounds, torch's fastest implementation (lowest median over rounds) and the
# ratio torch ms / our ms (above 1: we are faster), with the lowest and
# highest per-round ratio, peak RSS of both sides and the 1-minute load
# average seen by the processes (the machine may be shared: read the ratios
# with it).
#
# Duration: one round of every case took 36 minutes at load 5-11 on 2 CPUs
# (predict of 10 000 sequences: 2.6 and 3.8 minutes; gqa at T = 4096: torch's
# materialised scores take seconds per call); --n-predict 2000 and --shapes
# "32,128,256 8,512,512" keep a round near 5 minutes there.
#
# Needs: multihead installed (--lib or R_LIBS), Debian's python3-torch and
# libopenblas0-openmp, /usr/bin/python3.
#
# Usage: bench/compare-models.sh [--lib DIR] [--threads 2] [--rounds 1]
#          [--cases "a b c d gqa"] [--min-time 3] [--gqa-min-time 1.5]
#          [--n-predict 10000] [--shapes "B,T,E ..."] [--causal "0 1"] [--out FILE.jsonl]
#          [--omp-wait-policy passive|active]
# --omp-wait-policy exports OMP_WAIT_POLICY to both sides (default: not set,
# i.e. libgomp's default). On a machine shared with other work, torch's many
# small OpenMP regions with spinning threads collapse (training case c: 11 ms
# per step passive, 1000 ms with the default, 2 threads at load 7 on 2 CPUs),
# so a loaded run is only readable with passive on both sides.
# Case d (predict) runs torch's nn.MultiheadAttention model only: under
# no_grad in eval mode it takes torch's native fused inference path, its
# fastest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
lib=""
threads=2
rounds=1
cases="a b c d gqa"
min_time=3
gqa_min_time=1.5
n_predict=10000
shapes="32,128,256 8,512,512 2,2048,256 1,4096,128"
causals="0 1"
out="$(mktemp /tmp/models-compare-XXXXXX.jsonl)"
while [ $# -gt 0 ]; do
  case "$1" in
    --lib) lib="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --cases) cases="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --gqa-min-time) gqa_min_time="$2"; shift 2 ;;
    --n-predict) n_predict="$2"; shift 2 ;;
    --shapes) shapes="$2"; shift 2 ;;
    --causal) causals="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --omp-wait-policy) export OMP_WAIT_POLICY="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
libarg=()
[ -n "$lib" ] && libarg=(--lib "$lib")
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; threads=$threads; rounds=$rounds; load $(cut -d' ' -f1-3 /proc/loadavg); OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}"
echo "# records: $out"

ours() {  # ours CASE [extra args]
  local c="$1"; shift
  Rscript "$here/train-step.R" "${libarg[@]}" --case "$c" --threads "$threads" --jsonl "$out" \
    --tag "round$round" "$@" || echo "multihead failed: case $c $*"
}
theirs() {  # theirs CASE IMPL [extra args]
  local c="$1" impl="$2"; shift 2
  /usr/bin/python3 "$here/train_step_torch.py" --case "$c" --impl "$impl" --threads "$threads" \
    --jsonl "$out" --tag "round$round" "$@" 2>/dev/null || echo "torch $impl failed: case $c $*"
}
pair() {  # pair CASE "IMPLS" [extra args]: ours and torch's implementations, order by round
  local c="$1" impls="$2"; shift 2
  if [ $((round % 2)) = 1 ]; then
    ours "$c" "$@"
    for i in $impls; do theirs "$c" "$i" "$@"; done
  else
    for i in $impls; do theirs "$c" "$i" "$@"; done
    ours "$c" "$@"
  fi
}

for round in $(seq 1 "$rounds"); do
  for c in $cases; do
    case "$c" in
      a|b|c) pair "$c" "mha sdpa" --min-time "$min_time" ;;
      d) pair d "mha" --n-predict "$n_predict" ;;
      gqa)
        for shape in $shapes; do
          IFS=, read -r B T E <<< "$shape"
          for causal in $causals; do
            cflag=(); [ "$causal" = 1 ] && cflag=(--causal)
            pair gqa "sdpa einsum" --B "$B" --T "$T" --E "$E" --min-time "$gqa_min_time" "${cflag[@]}"
          done
        done ;;
      *) echo "unknown case $c" >&2; exit 2 ;;
    esac
  done
done

echo
/usr/bin/python3 "$here/compare-models-summary.py" "$out" --threads "$threads"
