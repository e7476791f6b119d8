#!/usr/bin/python3
"""Summarises the JSON records of bench/compare-models.sh (ours from
train-step.R, torch's from train_step_torch.py): per case, mode and shape, our
median over rounds (of each process's median ms), torch's fastest
implementation (lowest median over rounds), the ratio torch ms / our ms (above
1: multihead is faster), the lowest and highest per-round ratio (round i:
torch's fastest implementation in round i over ours in round i), peak RSS
(VmHWM at the end of the process; median over rounds; torch: of its fastest
implementation) and the highest 1-minute load average any of these processes
saw. Usage: compare-models-summary.py RECORDS.jsonl [--threads 2]"""
import json
import statistics
import sys
from collections import defaultdict

path = sys.argv[1]
threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
recs = [json.loads(l) for l in open(path) if l.strip()]
ours = defaultdict(dict)  # key -> tag -> record
torch = defaultdict(lambda: defaultdict(dict))  # key -> impl -> tag -> record
for r in recs:
    if int(r.get("threads", threads)) != threads:
        continue
    key = (r["case"], r["mode"], r["shape"])
    if r["impl"] == "multihead":
        ours[key][r["tag"]] = r
    else:
        torch[key][r["impl"]][r["tag"]] = r

ORDER = {"a": 0, "b": 1, "c": 2, "d": 3, "gqa": 4}
med = lambda rs, f: statistics.median(float(x[f]) for x in rs)
print("| case | mode | shape | multihead ms | torch fastest ms (impl) | torch / ours | per round | "
      "peak RSS MB ours / torch | load1 max | rounds |")
print("|---|---|---|---|---|---|---|---|---|---|")
def shape_order(shape):
    """(T, -B, causal) from 'B=.. T=.. ... causal=..', for the gqa rows."""
    f = dict(kv.split("=") for kv in shape.split() if "=" in kv)
    return (int(f.get("T", 0)), -int(f.get("B", 0)), f.get("causal", ""))


for key in sorted(ours, key=lambda k: (ORDER.get(k[0], 9), shape_order(k[2]), k[1] != "fwd")):
    if key not in torch:
        continue
    o = ours[key]
    m = med(o.values(), "median_ms")
    impl, best = min(((i, med(v.values(), "median_ms")) for i, v in torch[key].items()), key=lambda x: x[1])
    per = []
    for tag, r in o.items():
        t = [v[tag]["median_ms"] for v in torch[key].values() if tag in v]
        if t:
            per.append(min(t) / r["median_ms"])
    spread = f"{min(per):.2f}-{max(per):.2f}" if per else "-"
    loads = [float(r.get("load1", 0)) for r in o.values()] + \
            [float(r.get("load1", 0)) for v in torch[key].values() for r in v.values()]
    print(f"| {key[0]} | {key[1]} | {key[2]} | {m:.1f} | {best:.1f} ({impl.replace('torch-', '')}) | "
          f"{best / m:.2f}x | {spread} | {med(o.values(), 'peak_rss_MB'):.0f} / "
          f"{med(torch[key][impl].values(), 'peak_rss_MB'):.0f} | {max(loads):.1f} | {len(o)} |")
