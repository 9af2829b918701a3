#!/usr/bin/python3
"""Baseline for `herd bench allreduce`: PyTorch's gloo all_reduce on 127.0.0.1.

Starts --workers processes (torch.multiprocessing, spawn), each with a float32
tensor of --size bytes, runs --warmup untimed all_reduce calls, a barrier, then
--iters timed calls, and prints one JSON object with the same fields and
definitions as herd's benchmark (nccl-tests): time per call is the slowest
rank's mean, algbw = bytes / time, busbw = algbw * 2(N-1)/N, in MB/s (1e6).

Run it with Debian's interpreter, which has python3-torch:
    /usr/bin/python3 collective/bench/gloo_allreduce.py --workers 4 --size 16777216
"""

import argparse
import json
import os
import socket
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, args, port, queue):
    import torch
    import torch.distributed as dist

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=args.workers,
    )
    n = args.size // 4
    x = torch.full((n,), float(rank + 1), dtype=torch.float32)
    for _ in range(args.warmup):
        dist.all_reduce(x)
    if n > 0:
        # Check the plumbing once: sum of (r+1)*N^warmup... simpler: reset.
        x.fill_(float(rank + 1))
        dist.all_reduce(x)
        want = args.workers * (args.workers + 1) / 2
        if float(x[0]) != want or float(x[-1]) != want:
            queue.put((rank, None, f"wrong result {float(x[0])}, want {want}"))
            return
        x.fill_(1.0 / args.workers)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        dist.all_reduce(x)
    elapsed = time.perf_counter() - t0
    queue.put((rank, elapsed / max(args.iters, 1), None))
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--size", type=int, default=16 << 20, help="buffer bytes (float32)")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: default)")
    args = p.parse_args()

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, args, port, queue)) for r in range(args.workers)]
    for proc in procs:
        proc.start()
    times, errors = [], []
    deadline = time.monotonic() + 600
    got = 0
    while got < len(procs):
        try:
            rank, t, err = queue.get(timeout=1)
        except Exception:  # queue.Empty: check that every worker is still alive
            dead = [r for r, proc in enumerate(procs) if proc.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for proc in procs:
                    proc.kill()
                why = f"workers {dead} died" if dead else "timed out"
                print(f"gloo_allreduce: {why} (e.g. the rendezvous port was taken)", file=sys.stderr)
                sys.exit(1)
            continue
        got += 1
        if err:
            errors.append(f"rank {rank}: {err}")
        else:
            times.append(t)
    for proc in procs:
        proc.join(timeout=60)
    if errors:
        print("gloo_allreduce: " + "; ".join(errors), file=sys.stderr)
        sys.exit(1)
    t = max(times)
    n = args.workers
    algbw = args.size / t / 1e6 if t > 0 else 0.0
    busbw = algbw * 2 * (n - 1) / n
    print(json.dumps({
        "impl": "gloo",
        "torch": __import__("torch").__version__,
        "workers": n,
        "size_bytes": args.size,
        "iters": args.iters,
        "time_us": t * 1e6,
        "algbw_mb_s": algbw,
        "busbw_mb_s": busbw,
    }))


if __name__ == "__main__":
    main()
