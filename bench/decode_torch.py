#!/usr/bin/python3
"""Greedy decoding with and without a key/value cache in PyTorch eager (CPU,
float32, torch.no_grad, batch 1): the reference for bench/decode.R.

Model (random weights, seeded): token embedding 1000 x 256 + learned position
embedding 288 x 256; 4 post-norm blocks, each: causal self-attention with 8
heads of 32 (q/k/v/o projections with bias) -> add -> layer norm -> dense 1024
relu -> dense 256 -> add -> layer norm; a final dense layer to 1000 logits.

Generates --new (256) tokens after a --prompt (32) token prompt, two ways:
  full   re-runs the whole sequence (prompt + tokens so far) for every new
         token and takes the last position's logits;
  cached one pass over the prompt (prefill), then one position per token; per
         layer a preallocated cache of shape (1, 2, 288, 8, 32) (batch, key /
         value, position, head, head dim: Keras's MultiHeadAttention cache
         layout) written at the update index; each query attends over cache
         positions <= its own (the keys are sliced to [0, index + t), causal
         within the new positions).
Checks that both generate the same tokens and prints one JSON line: per-token
ms of each way (total / new tokens, the cached total includes the prefill),
the prefill ms, the median per-token ms of the cached steps, their ratio and
the peak RSS. --rounds N repeats both (alternating, fresh caches) and reports
medians over rounds.

Run with Debian's interpreter: /usr/bin/python3 bench/decode_torch.py [--threads 2]
  [--prompt 32] [--new 256] [--rounds 3] [--seed 1] [--jsonl FILE] [--tag TEXT]
"""
import argparse
import json
import math
import os
import sys
import time

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--prompt", type=int, default=32)
p.add_argument("--new", type=int, default=256)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--jsonl", default=None)
p.add_argument("--tag", default="")
args = p.parse_args()

if os.environ.get("_DECODE_CHILD") != "1":
    env = dict(os.environ)
    env["_DECODE_CHILD"] = "1"
    env["OMP_NUM_THREADS"] = str(args.threads)
    for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[v] = str(args.threads)
    d = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
    if os.path.exists(d + "/libblas.so.3"):
        env["LD_LIBRARY_PATH"] = d + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
VOCAB, MAXLEN, E, H, HD, FF, BLOCKS = 1000, 288, 256, 8, 32, 1024, 4
assert args.prompt + args.new <= MAXLEN


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(E, H * HD) for _ in range(4))
        self.norm1 = nn.LayerNorm(E, eps=1e-3)
        self.ff1 = nn.Linear(E, FF)
        self.ff2 = nn.Linear(FF, E)
        self.norm2 = nn.LayerNorm(E, eps=1e-3)

    def forward(self, x, cache=None, index=0):
        """x: (1, t, E) at positions index .. index + t - 1. cache: (1, 2, MAXLEN, H, HD)
        or None (then index must be 0 and the keys are x's own)."""
        _, t, _ = x.shape
        q = self.q(x).view(1, t, H, HD)
        k = self.k(x).view(1, t, H, HD)
        v = self.v(x).view(1, t, H, HD)
        if cache is not None:
            cache[:, 0, index:index + t] = k
            cache[:, 1, index:index + t] = v
            k = cache[:, 0, :index + t]
            v = cache[:, 1, :index + t]
        L = k.shape[1]
        s = torch.einsum("bthd,bshd->bhts", q, k) * (1.0 / math.sqrt(HD))  # (1, H, t, L)
        if t > 1:  # query i (position index + i) sees keys 0 .. index + i
            s = s.masked_fill(torch.ones(t, L, dtype=torch.bool).triu(index + 1), float("-inf"))
        a = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(1, t, H * HD)
        x = self.norm1(x + self.o(a))
        return self.norm2(x + self.ff2(F.relu(self.ff1(x))))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, E)
        self.pos = nn.Embedding(MAXLEN, E)
        self.blocks = nn.ModuleList([Block() for _ in range(BLOCKS)])
        self.head = nn.Linear(E, VOCAB)

    def forward(self, ids, caches=None, index=0):
        t = ids.shape[1]
        x = self.tok(ids) + self.pos(torch.arange(index, index + t)).unsqueeze(0)
        for i, b in enumerate(self.blocks):
            x = b(x, None if caches is None else caches[i], index)
        return self.head(x[:, -1])  # (1, VOCAB): the last position's logits


def generate_full(model, prompt):
    ids = prompt.clone()
    for _ in range(args.new):
        nxt = model(ids).argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], dim=1)
    return ids[0, prompt.shape[1]:].tolist()


def generate_cached(model, prompt):
    caches = [torch.zeros(1, 2, MAXLEN, H, HD) for _ in range(BLOCKS)]
    t0 = time.perf_counter()
    nxt = model(prompt, caches, 0).argmax(-1, keepdim=True)
    prefill = time.perf_counter() - t0
    out = [nxt.item()]
    steps = []
    index = prompt.shape[1]
    for _ in range(args.new - 1):
        t1 = time.perf_counter()
        nxt = model(nxt, caches, index).argmax(-1, keepdim=True)
        steps.append(time.perf_counter() - t1)
        out.append(nxt.item())
        index += 1
    return out, prefill, steps


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def main():
    torch.manual_seed(args.seed)
    model = Decoder().eval()
    prompt = torch.randint(0, VOCAB, (1, args.prompt), generator=torch.Generator().manual_seed(args.seed + 1))
    full_ms, cached_ms, prefill_ms, step_ms = [], [], [], []
    with torch.no_grad():
        generate_cached(model, prompt)  # warm-up
        for r in range(args.rounds):
            for way in (("full", "cached") if r % 2 == 0 else ("cached", "full")):
                t0 = time.perf_counter()
                if way == "full":
                    toks_full = generate_full(model, prompt)
                    full_ms.append((time.perf_counter() - t0) * 1e3 / args.new)
                else:
                    toks_cached, prefill, steps = generate_cached(model, prompt)
                    cached_ms.append((time.perf_counter() - t0) * 1e3 / args.new)
                    prefill_ms.append(prefill * 1e3)
                    step_ms.append(median(steps) * 1e3)
    same = toks_full == toks_cached
    first_diff = next((i for i, (a, b) in enumerate(zip(toks_full, toks_cached)) if a != b), None)
    rec = dict(impl="torch-eager", threads=args.threads, prompt=args.prompt, new=args.new, rounds=args.rounds,
               full_ms_per_token=median(full_ms), cached_ms_per_token=median(cached_ms),
               cached_step_ms=median(step_ms), prefill_ms=median(prefill_ms),
               speedup_cached=median(full_ms) / median(cached_ms), same_tokens=same, first_difference=first_diff,
               tokens_head=toks_cached[:8], peak_rss_MB=status_kb("VmHWM") / 1024,
               load1=float(open("/proc/loadavg").read().split()[0]), torch=torch.__version__, tag=args.tag)
    print(json.dumps(rec), flush=True)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")
    if not same:
        sys.exit("full and cached decoding generated different tokens (first at %d)" % first_diff)


if __name__ == "__main__":
    main()
