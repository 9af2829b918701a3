#!/usr/bin/env python3
"""Reference restatement of the text metrics that herd's scoring package ports.

Written from the definitions of the SQuAD v1.1 evaluation script (normalize_answer,
f1_score, exact_match_score, max over ground truths), Google's rouge-score (rougeL with
the default tokenizer, no stemmer) and sacreBLEU 2.x (corpus BLEU, 13a tokenizer,
exp smoothing, max order 4), using Python's own re, str.lower and str.split, whose
Unicode behaviour the Go port must match. Standard library only.

stdin: one JSON object per line, {"op": ..., ...}; stdout: one JSON result per line.
  {"op": "normalize", "s": S}                  -> {"v": normalized}
  {"op": "squad", "pred": P, "refs": [R...]}   -> {"em": bool, "f1": float}
  {"op": "rouge", "target": T, "pred": P}      -> {"p":, "r":, "f":}
  {"op": "tok13a", "s": S}                     -> {"v": tokenized}
  {"op": "bleu", "hyps": [H...], "refs": [[R...]...]} -> {"score":, "correct": [...], "total": [...], "sys": n, "ref": n}
"""
import json
import math
import re
import string
import sys
from collections import Counter


# --- SQuAD v1.1 -------------------------------------------------------------

ARTICLES = re.compile(r"\b(a|an|the)\b")
PUNCT = set(string.punctuation)


def normalize(s):
    s = s.lower()
    s = "".join(c for c in s if c not in PUNCT)
    s = ARTICLES.sub(" ", s)
    return " ".join(s.split())


def token_f1(pred, gold):
    p, g = normalize(pred).split(), normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0
    prec = 1.0 * same / len(p)
    rec = 1.0 * same / len(g)
    return (2 * prec * rec) / (prec + rec)


# --- rouge-score rougeL -----------------------------------------------------

NON_ALNUM = re.compile(r"[^a-z0-9]+")
VALID = re.compile(r"^[a-z0-9]+$")


def rouge_tokens(s):
    s = NON_ALNUM.sub(" ", s.lower())
    return [t for t in re.split(r"\s+", s) if VALID.match(t)]


def rouge_l(target, pred):
    t, p = rouge_tokens(target), rouge_tokens(pred)
    if not t or not p:
        return 0.0, 0.0, 0.0
    table = [[0] * (len(p) + 1) for _ in range(len(t) + 1)]
    for i in range(1, len(t) + 1):
        for j in range(1, len(p) + 1):
            if t[i - 1] == p[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    lcs = table[-1][-1]
    prec, rec = lcs / len(p), lcs / len(t)
    f = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return prec, rec, f


# --- sacreBLEU --------------------------------------------------------------

TOK_STEPS = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tok13a(line):
    for a, b in (("<skipped>", ""), ("-\n", ""), ("\n", " "), ("&quot;", '"'),
                 ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")):
        line = line.replace(a, b)
    line = " " + line + " "
    for rx, repl in TOK_STEPS:
        line = rx.sub(repl, line)
    return " ".join(line.split())


def ngrams(tokens, order=4):
    c = Counter()
    for n in range(1, order + 1):
        for i in range(len(tokens) - n + 1):
            c[tuple(tokens[i:i + n])] += 1
    return c


def corpus_bleu(hyps, refs, order=4):
    sys_len = ref_len = 0
    correct, total = [0] * order, [0] * order
    for hyp, rs in zip(hyps, refs):
        rs = [tok13a(r.rstrip()).split() for r in rs if r != ""]
        if not rs:
            continue
        h = tok13a(hyp.rstrip()).split()
        best = Counter()
        for r in rs:
            for g, c in ngrams(r, order).items():
                best[g] = max(best[g], c)
        lens = sorted(len(r) for r in rs)
        closest = min(lens, key=lambda L: (abs(len(h) - L), L))
        sys_len += len(h)
        ref_len += closest
        for g, c in ngrams(h, order).items():
            total[len(g) - 1] += c
            correct[len(g) - 1] += min(c, best.get(g, 0))
    if sys_len < ref_len:
        bp = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    else:
        bp = 1.0
    score = 0.0
    if any(correct):
        precisions = [0.0] * order
        k = 1.0
        for n in range(order):
            if total[n] == 0:
                break
            if correct[n] == 0:
                k *= 2
                precisions[n] = 100.0 / (k * total[n])
            else:
                precisions[n] = 100.0 * correct[n] / total[n]
        logs = [math.log(p) if p > 0 else -9999999999 for p in precisions]
        score = bp * math.exp(sum(logs) / order)
    return {"score": score, "correct": correct, "total": total, "sys": sys_len, "ref": ref_len}


def main():
    out = sys.stdout
    for line in sys.stdin:
        q = json.loads(line)
        op = q["op"]
        if op == "normalize":
            r = {"v": normalize(q["s"])}
        elif op == "squad":
            refs = q["refs"]
            r = {"em": any(normalize(q["pred"]) == normalize(g) for g in refs),
                 "f1": max(token_f1(q["pred"], g) for g in refs)}
        elif op == "rouge":
            p, rc, f = rouge_l(q["target"], q["pred"])
            r = {"p": p, "r": rc, "f": f}
        elif op == "tok13a":
            r = {"v": tok13a(q["s"])}
        elif op == "bleu":
            r = corpus_bleu(q["hyps"], q["refs"])
        else:
            raise SystemExit("unknown op " + op)
        out.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
