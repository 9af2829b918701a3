#!/usr/bin/python3
"""PyTorch-eager baseline for `herd bench train`: the same LoRA training step
(forward, summed causal-LM loss, backward, torch.optim.AdamW) on the same
model and batch shape, on the same libtorch, timed the same way.

usage: bench_train.py MODEL_DIR --r R --alpha A --targets q_proj,v_proj
                      --micro B --seq S --steps N --warmup W --threads T
Prints JSON like herd's: step_ms_median, tokens_per_sec.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_ref import causal_lm_loss_sum, forward, read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--targets", default="q_proj,v_proj")
    ap.add_argument("--micro", type=int, default=4)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    cfg = json.load(open(os.path.join(a.model_dir, "config.json")))
    W = read_safetensors(os.path.join(a.model_dir, "model.safetensors"))
    targets = a.targets.split(",")
    lora = {}
    for name, w in W.items():
        mod = name.rsplit(".", 2)
        if len(mod) == 3 and mod[1] in targets and mod[2] == "weight":
            out_f, in_f = w.shape
            A = torch.empty(a.r, in_f).uniform_(-1 / math.sqrt(in_f), 1 / math.sqrt(in_f))
            B = torch.zeros(out_f, a.r)
            key = "base_model.model." + name[: -len(".weight")]
            lora[key + ".lora_A.weight"] = A.requires_grad_(True)
            lora[key + ".lora_B.weight"] = B.requires_grad_(True)
    opt = torch.optim.AdamW(lora.values(), lr=1e-3, weight_decay=0.0, foreach=False)
    scaling = a.alpha / a.r
    V = cfg["vocab_size"]
    times = []
    for i in range(a.warmup + a.steps):
        ids = torch.randint(0, V, (a.micro, a.seq))
        t0 = time.perf_counter()
        logits = forward(cfg, W, lora, scaling, ids)
        loss = causal_lm_loss_sum(logits, ids)
        loss.backward()
        n = (ids[:, 1:] != -100).sum().item()
        for t in lora.values():
            t.grad.div_(n)
        torch.nn.utils.clip_grad_norm_(lora.values(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        if i >= a.warmup:
            times.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch-eager", "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "steps": a.steps, "step_ms_median": med, "step_ms_mean": statistics.mean(times),
                      "tokens_per_sec": a.micro * a.seq / (med / 1000)}))


if __name__ == "__main__":
    main()
