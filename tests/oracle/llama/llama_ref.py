#!/usr/bin/python3
"""Independent PyTorch reference for herd's Llama-family forward pass,
causal-LM loss and LoRA gradients, following Hugging Face transformers'
LlamaForCausalLM / Qwen2ForCausalLM semantics and PEFT's LoRA, written from
those definitions with nothing shared with herd's Go code.

usage: llama_ref.py MODEL_DIR ADAPTER_DIR INPUTS.safetensors OUT.safetensors

INPUTS holds "ids" and "labels" (int64 [B, S], -100 = not scored). OUT gets
"logits" [B, S, V], "loss_sum" (summed next-token cross-entropy) and, for
every adapter matrix, "grad:<PEFT key>".
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from oracle_st import read_safetensors, write_safetensors  # noqa: E402



def inv_freq(cfg, d):
    base = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    rs = cfg.get("rope_scaling") or {}
    if rs.get("rope_type", rs.get("type")) == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rms_norm(x, w, eps):
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return w * x.to(dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def forward(cfg, W, lora, scaling, ids):
    """Logits [B, S, V] (float32) of ids under weights W and LoRA matrices
    lora (PEFT keys), as LlamaForCausalLM / Qwen2ForCausalLM compute them."""
    arch = cfg["architectures"][0]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = cfg.get("head_dim") or cfg["hidden_size"] // H
    eps = cfg["rms_norm_eps"]
    qkv_bias = arch == "Qwen2ForCausalLM" or cfg.get("attention_bias", False)
    o_bias = arch != "Qwen2ForCausalLM" and cfg.get("attention_bias", False)

    B, S = ids.shape
    pos = torch.arange(S, dtype=torch.int64).float()
    freqs = torch.outer(pos, inv_freq(cfg, D))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[None, None], emb.sin()[None, None]
    mask = torch.full((S, S), torch.finfo(torch.float32).min).triu(1)

    def proj(layer, name, x):
        sub = "mlp" if name in ("gate_proj", "up_proj", "down_proj") else "self_attn"
        key = f"model.layers.{layer}.{sub}.{name}"
        bias = W.get(key + ".bias") if (qkv_bias and name in ("q_proj", "k_proj", "v_proj")) or (o_bias and name == "o_proj") else None
        y = F.linear(x, W[key + ".weight"], bias)
        a = lora.get(f"base_model.model.{key}.lora_A.weight")
        if a is not None:
            b = lora[f"base_model.model.{key}.lora_B.weight"]
            y = y + (x @ a.t() @ b.t()) * scaling
        return y

    h = F.embedding(ids, W["model.embed_tokens.weight"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        x = rms_norm(h, W[p + "input_layernorm.weight"], eps)
        q = proj(i, "q_proj", x).view(B, S, H, D).transpose(1, 2)
        k = proj(i, "k_proj", x).view(B, S, KV, D).transpose(1, 2)
        v = proj(i, "v_proj", x).view(B, S, KV, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
        scores = q @ k.transpose(2, 3) / math.sqrt(D) + mask
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        attn = (probs @ v).transpose(1, 2).reshape(B, S, H * D)
        h = h + proj(i, "o_proj", attn)
        x = rms_norm(h, W[p + "post_attention_layernorm.weight"], eps)
        h = h + proj(i, "down_proj", F.silu(proj(i, "gate_proj", x)) * proj(i, "up_proj", x))
    h = rms_norm(h, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    return F.linear(h, head).float()


def causal_lm_loss_sum(logits, labels):
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")


def main():
    model_dir, adapter_dir, inputs_path, out_path = sys.argv[1:5]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    acfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    lora = read_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    for t in lora.values():
        t.requires_grad_(True)
    inputs = read_safetensors(inputs_path)
    r, alpha = acfg["r"], acfg["lora_alpha"]
    scaling = alpha / math.sqrt(r) if acfg.get("use_rslora") else alpha / r

    logits = forward(cfg, W, lora, scaling, inputs["ids"])
    loss = causal_lm_loss_sum(logits, inputs["labels"])
    loss.backward()

    out = {"logits": logits.detach(), "loss_sum": loss.detach().reshape([])}
    for k, t in lora.items():
        out["grad:" + k] = t.grad if t.grad is not None else torch.zeros_like(t)
    write_safetensors(out_path, out)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
