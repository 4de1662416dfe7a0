#!/usr/bin/python3
"""A/B comparison of broker/worker builds on one end-to-end benchmark cell.

Usage: tests/bench/ab.py MODE SIZE N NAME:BROKER:WORKER [NAME:BROKER:WORKER ...]
  MODE recv|echo|pipe|send|recvz, SIZE in bytes, N rounds. Each round runs the
  raw C reference client once and then every variant once (interleaved, so
  the load of a shared machine hits all of them alike); prints medians, the
  ratio to raw C, latency and the broker's and the worker's CPU seconds.
  The worker binary is passed with `broker run --worker`, so one broker can be
  tried with two workers. Uses tests/bench/run.py (BUILD for bench_server and
  ref_client, default build) and tests/bench/client.lua. Not part of any run."""
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R  # noqa: E402


def ours(port, mode, size, deflate, broker, worker):
    script = R.script_for(port, mode, size, deflate)
    cmd = [broker, "run", "--quiet", "--mem", "512M", "--worker", worker,
           "--allow", "ws://127.0.0.1:%d/*" % port, script]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    d = None
    for line in p.stdout:
        m = R.RES.search(line)
        if m:
            b = R.proc_stat(p.pid)
            ws = [x for x in (R.proc_stat(k) for k in R.descendants(p.pid)) if x]
            d = {"rate": int(m.group(1)) / float(m.group(3)), "p50": float(m.group(4)),
                 "p99": float(m.group(5)), "bcpu": b[0] if b else 0,
                 "wcpu": max(x[0] for x in ws) if ws else 0}
            break
    try:
        p.communicate(timeout=R.TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
    return d


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    mode, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    variants = [v.split(":") for v in sys.argv[4:]]
    deflate = mode == "recvz"
    wire = "recv" if deflate else mode
    res = {v[0]: [] for v in variants}
    refs = []
    srv, port = R.start_server()
    try:
        for _ in range(n):
            r = R.run_one("ref", port, mode, size)
            if r:
                refs.append(r)
            for name, broker, worker in variants:
                d = ours(port, wire, size, deflate, broker, worker)
                if d:
                    res[name].append(d)
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(R.TMP, ignore_errors=True)
    if not refs:
        sys.exit("reference client failed")
    ref = statistics.median([r["rate"] for r in refs])
    print("%s %s: raw C %s p50 %.0f us" % (mode, R.size_name(size), R.fmt_rate(ref),
                                            statistics.median([r["p50"] for r in refs])))
    for name, _, _ in variants:
        rs = res[name]
        if not rs:
            print("  %-10s failed" % name)
            continue

        def med(k):
            return statistics.median([r[k] for r in rs])
        print("  %-10s %10s %.2fx  p50 %.0f p99 %.0f us  broker CPU %.2f s  worker CPU %.2f s"
              "  (n=%d)" % (name, R.fmt_rate(med("rate")), med("rate") / ref, med("p50"),
                            med("p99"), med("bcpu"), med("wcpu"), len(rs)))


if __name__ == "__main__":
    main()
