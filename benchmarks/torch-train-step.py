#!/usr/bin/env python3
"""PyTorch's CPU fp32 training step on a GPT-Neo shape, beside `refgpt bench --train`.

transformers is not needed: the model below is GPTNeoForCausalLM's computation written in plain torch
(the same modules in the same order, random weights N(0, 0.02) as HF initialises them):

    x = wte[ids] + wpe[pos]
    per block:  x = x + out_proj(attn(ln_1(x)))      attn: q/k/v_proj without bias, scores q·kᵀ NOT scaled
                                                      by 1/sqrt(head_dim), causal; local layers (odd ones)
                                                      see the last window_size keys; softmax in fp32
                x = x + c_proj(gelu_new(c_fc(ln_2(x))))
    logits = ln_f(x) · wteᵀ                           (tied LM head, no bias)
    loss = cross_entropy(logits[:, :-1], ids[:, 1:])  (HF's shifted labels: T-1 targets per row)

One step: optimizer.zero_grad(); loss.backward() after the forward; optimizer.step() (torch.optim.AdamW,
default betas / eps / weight decay). One warm-up step, then --steps timed ones; medians are reported.
gelu_new is HF's NewGELUActivation formula (several elementwise ops) unless --fused-gelu
(F.gelu(approximate='tanh')).

    /usr/bin/python3 benchmarks/torch-train-step.py [--shape gpt-neo-125M] [--batch-size 8] [--max-length 128]
        [--threads 2] [--steps 5] [--seed 1234] [--fused-gelu] [--profile]

Prints one JSON object on stdout; --profile adds the top ops of one step (torch.profiler) on stderr.
Before and after the steps it times a 2048 x 2048 x 2048 torch.mm ("mm_peak_gflops", the higher of the two):
what this BLAS reaches on a large matmul with these threads, the native counterpart of refgpt's madd probe.

The BLAS matters: Debian's python3-torch calls the system libblas.so.3 for fp32 matmuls. With only the
reference BLAS (libblas3) installed (about 2 GFLOP/s), run it with OpenBLAS's library first on the loader path
instead (no system change; the OpenMP build, as torch's own threads are OpenMP):
    apt-get download libopenblas0-openmp && dpkg -x libopenblas0-openmp_*.deb /tmp/ob
    LD_LIBRARY_PATH=/tmp/ob/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 benchmarks/torch-train-step.py
The JSON says which BLAS library the process loaded ("blas_library").
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

SHAPES = {
    'gpt-neo-125M': dict(hidden=768, layers=12, heads=12),
    'gpt-neo-1.3B': dict(hidden=2048, layers=24, heads=16),
}
VOCAB, POSITIONS, WINDOW = 50257, 2048, 256


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Attention(nn.Module):
    def __init__(self, C, H, local, T):
        super().__init__()
        self.H, self.D = H, C // H
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.out_proj = nn.Linear(C, C, bias=True)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        if local:
            mask = mask ^ torch.tril(mask, -WINDOW)  # HF GPTNeoSelfAttention: bias ^ tril(bias, -window_size)
        self.register_buffer('mask', mask, persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.H, self.D).permute(0, 2, 1, 3)
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        w = torch.matmul(q, k.transpose(-1, -2))  # no 1/sqrt(head_dim) in GPT-Neo
        w = torch.where(self.mask[:T, :T], w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        w = torch.softmax(w, dim=-1)
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(B, T, C)
        return self.out_proj(a)


class Block(nn.Module):
    def __init__(self, C, H, local, T, act):
        super().__init__()
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.attn = Attention(C, H, local, T)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.c_proj = nn.Linear(4 * C, C)
        self.act = act

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(self.act(self.c_fc(self.ln_2(x))))


class GPTNeo(nn.Module):
    def __init__(self, hidden, layers, heads, T, act):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, hidden)
        self.wpe = nn.Embedding(POSITIONS, hidden)
        self.h = nn.ModuleList(Block(hidden, heads, l % 2 == 1, T, act) for l in range(layers))  # global, local, ...
        self.ln_f = nn.LayerNorm(hidden, eps=1e-5)
        for m in self.modules():  # HF GPTNeoPreTrainedModel._init_weights
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, ids, labels):
        T = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(T).unsqueeze(0))
        for b in self.h:
            x = b(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # tied lm_head
        return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))


def mm_peak(n=2048, calls=7):
    """GFLOP/s of one n x n x n fp32 torch.mm on this BLAS and these threads (median of calls, after one):
    the native counterpart of the WASM madd probe, measured in the same run."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    ts = []
    for _ in range(calls):
        t = time.perf_counter()
        torch.mm(a, b)
        ts.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(ts) / 1e9


def blas_library():
    try:
        with open('/proc/self/maps') as f:
            libs = {line.split()[-1] for line in f if 'blas' in line.lower() and '/' in line}
        return sorted(libs)
    except OSError:
        return []


def other_cpu(mark):
    """Share of all cores other processes used since mark (Linux /proc/stat)."""
    now = cpu_mark()
    if mark is None or now is None:
        return None
    (i0, t0, s0), (i1, t1, s1) = mark, now
    total = t1 - t0
    if total <= 0:
        return None
    busy = total - (i1 - i0) - (s1 - s0) * os.sysconf('SC_CLK_TCK')
    return round(min(1.0, max(0.0, busy / total)), 3)


def cpu_mark():
    try:
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        t = os.times()
        return v[3] + v[4], sum(v), t.user + t.system
    except OSError:
        return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--shape', default='gpt-neo-125M', choices=sorted(SHAPES))
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--max-length', type=int, default=128)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--fused-gelu', action='store_true')
    p.add_argument('--profile', action='store_true')
    a = p.parse_args()
    if a.batch_size < 1 or a.steps < 1 or a.threads < 1 or not 2 <= a.max_length <= POSITIONS:
        p.error('--batch-size, --steps, --threads must be >= 1 and --max-length in 2..2048')

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    shape = SHAPES[a.shape]
    act = (lambda x: F.gelu(x, approximate='tanh')) if a.fused_gelu else gelu_new
    model = GPTNeo(shape['hidden'], shape['layers'], shape['heads'], a.max_length, act).float()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, 50000, (a.batch_size, a.max_length))
    tokens = a.batch_size * a.max_length

    peak_before = mm_peak()
    rows = []
    for i in range(a.steps + 1):
        mark = cpu_mark()
        t0 = time.perf_counter()
        opt.zero_grad()
        t1 = time.perf_counter()
        loss = model(ids, ids)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if i > 0:
            rows.append(dict(zero_s=t1 - t0, fwd_s=t2 - t1, bwd_s=t3 - t2, fwd_bwd_s=t3 - t1, optimizer_s=t4 - t3,
                             loss=loss.item(), other_cpu=other_cpu(mark)))

    peak_after = mm_peak()
    peak = max(peak_before, peak_after)

    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            opt.zero_grad()
            model(ids, ids).backward()
            opt.step()
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=25), file=sys.stderr)

    C, L = shape['hidden'], shape['layers']
    key_pairs = sum(min(t + 1, WINDOW) if l % 2 == 1 else t + 1 for l in range(L) for t in range(a.max_length))
    flops = 6 * params * tokens
    flops_attn = 12 * C * key_pairs * a.batch_size
    med = lambda k: statistics.median(r[k] for r in rows)
    fb, op, zs = med('fwd_bwd_s'), med('optimizer_s'), med('zero_s')
    r3 = lambda x: round(x, 3)
    print(json.dumps(dict(
        mode='train', framework='torch', torch=torch.__version__, model=a.shape, threads=torch.get_num_threads(),
        dtype='float32', blas_library=blas_library(), gelu='F.gelu(tanh)' if a.fused_gelu else 'gelu_new (HF formula)',
        parameters=params, batch_size=a.batch_size, max_length=a.max_length, tokens_per_step=tokens, steps=a.steps,
        loss=r3(rows[-1]['loss']), zero_grad_s=r3(zs), fwd_s=r3(med('fwd_s')), bwd_s=r3(med('bwd_s')), fwd_bwd_s=r3(fb),
        optimizer_s=r3(op), step_s=r3(zs + fb + op), train_tokens_per_s=r3(tokens / (zs + fb + op)),
        fwd_bwd_tokens_per_s=r3(tokens / fb), fwd_bwd_gflops=r3(flops / fb / 1e9),
        fwd_bwd_gflops_with_attention=r3((flops + flops_attn) / fb / 1e9), flops_per_step=flops,
        attention_flops_per_step=flops_attn,
        mm_peak_gflops=r3(peak), mm_peak_before_gflops=r3(peak_before), mm_peak_after_gflops=r3(peak_after),
        of_mm_peak=r3(flops / fb / 1e9 / peak),
        per_step=[{k: (r3(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )))


if __name__ == '__main__':
    main()
