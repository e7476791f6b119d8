#!/usr/bin/python3
"""PyTorch (eager, CPU, float32) side of bench/train-step.R: the same models,
written out as nn.Modules, trained with torch.optim.Adam on MSE over the same
number of batches per "epoch", predict under torch.no_grad(), and grouped-query
attention with Keras's GroupQueryAttention projections. One case per process.

Run with Debian's interpreter (/usr/bin/python3: python3-torch 1.13). Threads:
OMP_NUM_THREADS / OPENBLAS_NUM_THREADS are set to --threads and the script
re-executes itself so the BLAS sees them at load time (OpenBLAS's OpenMP build
when installed, as in ../shared/bench/torch_mha_ref.py); torch.set_num_threads.

Cases (--case), as in train-step.R:
  a, b, c  training step (forward, MSE, backward, Adam step); time per step is
           the time of a loop over --steps batches / steps, after one warm-up
           loop, repeated for --min-time seconds (at least --min-reps loops)
  d        predict of model a on --n-predict sequences in batches of 128
  gqa      grouped-query attention (8 query heads, 2 key/value heads, head_dim
           E / 8) forward (no_grad) and forward+backward (loss sum(out * R),
           gradients for inputs and weights), mha.R's loop for --min-time s
Implementations (--impl):
  training / predict: "mha"  nn.MultiheadAttention(batch_first=True,
                             need_weights=False) (fused in-projection);
                      "sdpa" separate q/k/v/o nn.Linear + torch 1.13's
                             private _scaled_dot_product_attention (math).
  gqa:  "sdpa"   einsum projections, keys/values repeat_interleave'd to 8
                 heads, then _scaled_dot_product_attention;
        "einsum" einsum projections and grouped scores without repeating
                 (query heads viewed as (kv head, group)).
Every record has the process's peak RSS (VmHWM at the end) and the RSS after
set-up; for d the peak is reset after set-up (predict's own peak on top of
the 1.3 GB input).

Usage: /usr/bin/python3 bench/train_step_torch.py --case a --impl mha [--threads 2]
         [--min-time 3] [--steps N] [--n-predict 10000] [--jsonl FILE] [--tag TEXT]
         [--B --T --E --causal (gqa)] [--check]
"""
import argparse
import json
import math
import os
import sys
import time

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--case", default="a", choices=["a", "b", "c", "d", "gqa"])
p.add_argument("--impl", default=None)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--min-time", type=float, default=3.0)
p.add_argument("--min-reps", type=int, default=None)
p.add_argument("--steps", type=int, default=None)
p.add_argument("--n-predict", type=int, default=10000)
p.add_argument("--B", type=int, default=32)
p.add_argument("--T", type=int, default=128)
p.add_argument("--E", type=int, default=256)
p.add_argument("--causal", action="store_true")
p.add_argument("--jsonl", default=None)
p.add_argument("--tag", default="")
p.add_argument("--check", action="store_true", help="gqa: compare the implementations (float64) and exit")
args = p.parse_args()
if args.impl is None:
    args.impl = "sdpa" if args.case == "gqa" else "mha"
if args.min_reps is None:
    args.min_reps = 5 if args.case == "gqa" else 2

if os.environ.get("_TRAIN_STEP_CHILD") != "1":
    env = dict(os.environ)
    env["_TRAIN_STEP_CHILD"] = "1"
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
sdpa = torch._C._nn._scaled_dot_product_attention  # torch 1.13: (q, k, v, mask, dropout, need_weights, causal)


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def time_loop(f, per=1.0):
    f()  # warm-up
    ts = []
    start = time.perf_counter()
    while len(ts) < args.min_reps or time.perf_counter() - start < args.min_time:
        t0 = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t0) / per)
    return ts


def write_record(mode, shape, ts, base_kb, **extra):
    rec = dict(impl="torch-" + args.impl, case=args.case, mode=mode, shape=shape, threads=args.threads,
               tag=args.tag, reps=len(ts), median_ms=median(ts) * 1e3, min_ms=min(ts) * 1e3,
               max_ms=max(ts) * 1e3, rss_base_MB=base_kb / 1024, peak_rss_MB=status_kb("VmHWM") / 1024,
               load1=float(open("/proc/loadavg").read().split()[0]), torch=torch.__version__, torch_threads=torch.get_num_threads(),
               omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", ""), **extra)
    print(f"{rec['impl']:10s} {args.case:8s} {mode:7s} {shape}: median {rec['median_ms']:9.2f} ms (n={len(ts)})  "
          f"peakRSS {rec['peak_rss_MB']:7.1f} MB (base {rec['rss_base_MB']:.1f})", flush=True)
    if args.jsonl:
        with open(args.jsonl, "a") as f:
            f.write(json.dumps(rec) + "\n")


# ---------------------------------------------------------------- the encoder models
class Attention(nn.Module):
    """Keras MultiHeadAttention self-attention (num_heads * key_dim == E here)."""

    def __init__(self, E, H, Kd, impl):
        super().__init__()
        self.impl, self.H, self.Kd = impl, H, Kd
        if impl == "mha":
            assert H * Kd == E
            self.mha = nn.MultiheadAttention(E, H, batch_first=True)
        else:
            self.q = nn.Linear(E, H * Kd)
            self.k = nn.Linear(E, H * Kd)
            self.v = nn.Linear(E, H * Kd)
            self.o = nn.Linear(H * Kd, E)

    def forward(self, x):
        if self.impl == "mha":
            return self.mha(x, x, x, need_weights=False)[0]
        B, T, _ = x.shape
        split = lambda t: t.view(B, T, self.H, self.Kd).transpose(1, 2)  # (B, H, T, Kd)
        ctx, _ = sdpa(split(self.q(x)), split(self.k(x)), split(self.v(x)), None, 0.0, False, False)
        return self.o(ctx.transpose(1, 2).reshape(B, T, self.H * self.Kd))


class Block(nn.Module):
    """Post-norm block: attention -> add -> layer norm -> dense relu -> dense -> add -> layer norm."""

    def __init__(self, E, H, Kd, ff, impl):
        super().__init__()
        self.att = Attention(E, H, Kd, impl)
        self.norm1 = nn.LayerNorm(E, eps=1e-3)
        self.ff1 = nn.Linear(E, ff)
        self.ff2 = nn.Linear(ff, E)
        self.norm2 = nn.LayerNorm(E, eps=1e-3)

    def forward(self, x):
        x = self.norm1(x + self.att(x))
        return self.norm2(x + self.ff2(F.relu(self.ff1(x))))


class Encoder(nn.Module):
    def __init__(self, E, H, Kd, ff, blocks, impl):
        super().__init__()
        self.blocks = nn.ModuleList([Block(E, H, Kd, ff, impl) for _ in range(blocks)])
        self.head = nn.Linear(E, 1)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean(dim=1))


CASES = dict(a=dict(B=32, T=128, E=256, H=8, Kd=32, ff=512, blocks=1, steps=4),
             b=dict(B=8, T=512, E=512, H=8, Kd=64, ff=2048, blocks=4, steps=1),
             c=dict(B=64, T=16, E=32, H=2, Kd=16, ff=64, blocks=1, steps=20))


def run_train():
    c = CASES[args.case]
    steps = args.steps or c["steps"]
    torch.manual_seed(1)
    model = Encoder(c["E"], c["H"], c["Kd"], c["ff"], c["blocks"], args.impl)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(steps * c["B"], c["T"], c["E"])
    y = torch.randn(steps * c["B"], 1)
    base = status_kb("VmRSS")

    def epoch():
        for i in range(steps):
            sl = slice(i * c["B"], (i + 1) * c["B"])
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model(x[sl]), y[sl])
            loss.backward()
            opt.step()
        return loss.item()

    ts = time_loop(epoch, per=steps)
    shape = "B={B} T={T} E={E} H={H} Kd={Kd} ff={ff} blocks={blocks}".format(**c)
    write_record("train", shape, ts, base, steps=steps)


def run_predict():
    c = CASES["a"]
    n = args.n_predict
    torch.manual_seed(1)
    model = Encoder(c["E"], c["H"], c["Kd"], c["ff"], c["blocks"], args.impl).eval()
    x = torch.randn(n, c["T"], c["E"])
    hwm_reset = reset_hwm()  # the peak of predict itself, on top of the input
    base = status_kb("VmRSS")

    def predict(xs):
        with torch.no_grad():
            return torch.cat([model(xs[i:i + 128]) for i in range(0, xs.shape[0], 128)])

    predict(x[:256])
    t0 = time.perf_counter()
    out = predict(x)
    ts = [time.perf_counter() - t0]
    assert out.shape == (n, 1) and torch.isfinite(out).all()
    write_record("predict", f"n={n} B=128 T={c['T']} E={c['E']}", ts, base, n=n, hwm_reset=hwm_reset)


# ---------------------------------------------------------------- grouped-query attention
def gqa_weights(E, Nq, Nkv, hd, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s, scale=1.0: (torch.randn(*s, generator=g, dtype=torch.float64) * scale).to(dtype)
    return dict(qk=r(E, Nq, hd, scale=E ** -0.5), qb=r(Nq, hd, scale=0.1),
                kk=r(E, Nkv, hd, scale=E ** -0.5), kb=r(Nkv, hd, scale=0.1),
                vk=r(E, Nkv, hd, scale=E ** -0.5), vb=r(Nkv, hd, scale=0.1),
                ok=r(Nq, hd, E, scale=(Nq * hd) ** -0.5), ob=r(E, scale=0.1))


def gqa_forward(impl, q, k, v, W, causal):
    """Keras GroupQueryAttention: EinsumDense projections 'bqm,muh->bquh', key and
    value heads repeated num_query_heads / num_key_value_heads times (each key/value
    head serves consecutive query heads), softmax(q k^T / sqrt(head_dim)) v, output
    projection 'bquh,uhm->bqm'."""
    Nq, hd = W["qb"].shape
    Nkv = W["kb"].shape[0]
    G = Nq // Nkv
    Q = torch.einsum("btm,muh->buth", q, W["qk"]) + W["qb"].unsqueeze(1)  # (B, Nq, T, hd)
    K = torch.einsum("bsm,muh->bush", k, W["kk"]) + W["kb"].unsqueeze(1)  # (B, Nkv, S, hd)
    V = torch.einsum("bsm,muh->bush", v, W["vk"]) + W["vb"].unsqueeze(1)
    if impl == "sdpa":
        ctx, _ = sdpa(Q, K.repeat_interleave(G, dim=1), V.repeat_interleave(G, dim=1), None, 0.0, False, causal)
    else:
        B, _, T, _ = Q.shape
        S = K.shape[2]
        Qg = Q.view(B, Nkv, G, T, hd) * (1.0 / math.sqrt(hd))
        s = torch.einsum("bkgth,bksh->bkgts", Qg, K)
        if causal:
            s = s.masked_fill(torch.ones(T, S, dtype=torch.bool).triu(1), float("-inf"))
        ctx = torch.einsum("bkgts,bksh->bkgth", s.softmax(-1), V).reshape(B, Nq, T, hd)
    return torch.einsum("buth,uhm->btm", ctx, W["ok"]) + W["ob"]


def run_gqa():
    B, T, E = args.B, args.T, args.E
    hd = E // 8
    W = gqa_weights(E, 8, 2, hd, torch.float32)
    g = torch.Generator().manual_seed(1)
    q, k, v, R = (torch.randn(B, T, E, generator=g) for _ in range(4))
    base = status_kb("VmRSS")
    shape = f"B={B} T={T} E={E} Nq=8 Nkv=2 hd={hd} causal={int(args.causal)}"

    def fwd():
        with torch.no_grad():
            gqa_forward(args.impl, q, k, v, W, args.causal)
    write_record("fwd", shape, time_loop(fwd), base, causal=args.causal)
    xs = [t.clone().requires_grad_(True) for t in (q, k, v)]
    Wg = {n: t.clone().requires_grad_(True) for n, t in W.items()}

    def fwdbwd():
        for t in xs + list(Wg.values()):
            t.grad = None
        (gqa_forward(args.impl, *xs, Wg, args.causal) * R).sum().backward()
    write_record("fwdbwd", shape, time_loop(fwdbwd), base, causal=args.causal)


def check_gqa():
    """Both implementations against a plain loop over query heads (float64)."""
    B, T, E = 2, 9, 32
    hd = E // 8
    W = gqa_weights(E, 8, 2, hd, torch.float64)
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(B, T, E, generator=g, dtype=torch.float64) for _ in range(3))
    for causal in (False, True):
        outs = []
        for h in range(8):
            j = h // 4
            Q = q @ W["qk"][:, h] + W["qb"][h]
            K = k @ W["kk"][:, j] + W["kb"][j]
            V = v @ W["vk"][:, j] + W["vb"][j]
            s = Q @ K.transpose(1, 2) / math.sqrt(hd)
            if causal:
                s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            outs.append(s.softmax(-1) @ V @ W["ok"][h])
        ref = sum(outs) + W["ob"]
        for impl in ("sdpa", "einsum"):
            d = (gqa_forward(impl, q, k, v, W, causal) - ref).abs().max().item()
            print(f"gqa {impl:6s} causal={int(causal)}: max|diff| vs per-head loop = {d:.2e}")
            assert d < 1e-10


if __name__ == "__main__":
    if args.check:
        check_gqa()
    elif args.case in ("a", "b", "c"):
        run_train()
    elif args.case == "d":
        run_predict()
    else:
        run_gqa()
