#!/usr/bin/python3
"""Summarises the JSON records written by bench/compare-torch.sh (ours from
bench/mha.R, torch's from torch_mha_ref.py): per shape, causal flag and mode,
the median over rounds of our median ms, torch's fastest implementation (the
lowest median over rounds among einsum, fused, sdpa, native) and the speed-up
torch_ms / our_ms; then the lowest and highest per-round speed-up (round i:
torch's fastest implementation in round i over ours in round i; records count
as rounds in the order they were written), which shows how much the machine's
noise moved the verdict. Usage: compare-summary.py RECORDS.jsonl [--threads 2]"""
import json
import statistics
import sys
from collections import defaultdict

path = sys.argv[1]
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
recs = [json.loads(l) for l in open(path) if l.strip()]
ours = defaultdict(list)
torch = defaultdict(lambda: defaultdict(list))
for r in recs:
    if int(r.get("threads", threads)) != threads or r.get("dtype", "float32") != "float32":
        continue
    key = (int(r["B"]), int(r["T"]), int(r["E"]), int(r["H"]), int(r["Kd"]), bool(r["causal"]), r["mode"])
    if str(r["impl"]).startswith("multihead"):
        ours[key].append(float(r["median_ms"]))
    else:
        torch[key][r["impl"]].append(float(r["median_ms"]))


def flops(B, T, E, H, Kd, mode):
    f = 3 * 2 * B * T * E * H * Kd + 4 * B * H * T * T * Kd + 2 * B * T * H * Kd * E
    return f * (3 if mode == "fwdbwd" else 1)


def per_round(key):
    """Speed-ups round by round: torch's fastest implementation in the round over ours."""
    out = []
    for i, m in enumerate(ours[key]):
        times = [v[i] for v in torch[key].values() if len(v) > i]
        if times:
            out.append(min(times) / m)
    return out


print(f"| B, T=S, E, heads, key_dim | causal | mode | multihead ms (GFLOP/s) | torch fastest ms (impl) | speed-up | "
      f"per round (lowest-highest) | rounds |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(ours, key=lambda k: (k[1], -k[0], k[5], k[6] != "fwd")):
    B, T, E, H, Kd, causal, mode = key
    if key not in torch:
        continue
    best_impl, best = min(((i, statistics.median(v)) for i, v in torch[key].items()), key=lambda x: x[1])
    m = statistics.median(ours[key])
    pr = per_round(key)
    spread = f"{min(pr):.2f}-{max(pr):.2f}x" if pr else "-"
    gf = flops(B, T, E, H, Kd, mode) / (m / 1e3) / 1e9
    print(f"| {B}, {T}, {E}, {H}, {Kd} | {'yes' if causal else 'no'} | {mode} | {m:.1f} ({gf:.0f}) | "
          f"{best:.1f} ({best_impl}) | {best / m:.2f}x | {spread} | {len(ours[key])} |")
