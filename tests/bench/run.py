#!/usr/bin/python3
"""Driver of `make bench` (called by tests/bench/run.sh): end-to-end WebSocket
figures of our client (a Lua script in a sandboxed worker through the real
broker) next to a minimal C reference client and peer clients, all against
tests/bench/bench_server on loopback, in one run, plus component figures.

Every figure is the median of RUNS runs of SECS seconds each; every client's
figure is printed with its ratio to the C reference client measured in the
same run. Never part of `make test`: it prints tables, it does not judge
(targets are listed with "met"/"MISSED" for the reader).

Environment: BUILD (default build), BENCH_RUNS (5), BENCH_SECS (0.4),
BENCH_SIZES (16,1024,65536,1048576), BENCH_MODES (recv,echo,pipe,send,recvz),
BENCH_CLIENTS (ref,ours,lws,node,py,luahttp), BENCH_COMPONENTS (1; 0 skips the
component benchmarks), BENCH_OUT (a file to write the tables to as Markdown as
well). The libwebsockets tuning table runs only when lws is among the clients."""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SECS = float(os.environ.get("BENCH_SECS", "0.4"))
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "16,1024,65536,1048576").split(",")]
MODES = os.environ.get("BENCH_MODES", "recv,echo,pipe,send,recvz").split(",")
CLIENTS = os.environ.get("BENCH_CLIENTS", "ref,ours,lws,node,py,luahttp").split(",")
OUT = os.environ.get("BENCH_OUT")
TIMEOUT = 60
TMP = tempfile.mkdtemp(prefix="bench.")
RES = re.compile(r"RESULT msgs=(\d+) bytes=(\d+) secs=([\d.]+) p50_us=([\d.]+) p99_us=([\d.]+)")
CLK = os.sysconf("SC_CLK_TCK")
md_lines = []


def out(line=""):
    print(line, flush=True)
    md_lines.append(line)


def size_name(n):
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return "%d MiB" % (n >> 20)
    if n >= 1024 and n % 1024 == 0:
        return "%d KiB" % (n >> 10)
    return "%d B" % n


def fmt_rate(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return "%.2f M" % (v / 1e6)
    if v >= 1e3:
        return "%.1f k" % (v / 1e3)
    return "%.0f" % v


def fmt_bw(v):
    return "-" if v is None else ("%.2f GB/s" % (v / 1e9) if v >= 1e9 else "%.0f MB/s" % (v / 1e6))


# ---- the server ----

def start_server():
    p = subprocess.Popen([os.path.join(BUILD, "bench_server"), "--port", "0"],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    m = re.match(r"LISTENING (\d+)", line)
    if not m:
        p.kill()
        sys.exit("bench_server did not start")
    return p, int(m.group(1))


# ---- clients: each returns (cmd, env) or None when not available ----

def have(cmd):
    return shutil.which(cmd) is not None


def lua_http_ok():
    return have("lua5.1") and subprocess.run(
        ["lua5.1", "-e", "require'http.websocket'"], capture_output=True).returncode == 0


AVAILABLE = {
    "ref": True,
    "ours": True,
    "lws": os.path.exists(os.path.join(BUILD, "lws_client")),
    "node": have("node") and os.path.isdir(os.path.join(ROOT, "tests/peers/node_modules/ws")),
    "py": subprocess.run(["/usr/bin/python3", "-c", "import websockets"],
                         capture_output=True).returncode == 0,
    "luahttp": lua_http_ok(),
}
LABEL = {"ref": "raw C", "ours": "ours (Lua via broker)", "lws": "libwebsockets",
         "node": "Node ws", "py": "python3-websockets", "luahttp": "lua-http",
         "srv": "server ceiling"}


def client_args(port, mode, size, deflate, extra=()):
    a = ["--port", str(port), "--mode", mode, "--size", str(size), "--secs", str(SECS)]
    if deflate:
        a.append("--deflate")
    return a + list(extra)


def script_for(port, mode, size, deflate):
    with open(os.path.join(ROOT, "tests/bench/client.lua")) as f:
        s = f.read()
    for k, v in (("@PORT@", str(port)), ("@MODE@", mode), ("@SIZE@", str(size)),
                 ("@SECS@", str(SECS)), ("@DEPTH@", "100"),
                 ("@DEFLATE@", "true" if deflate else "false")):
        s = s.replace(k, v)
    path = os.path.join(TMP, "client.lua")
    with open(path, "w") as f:
        f.write(s)
    return path


def proc_stat(pid):
    """(cpu seconds, peak RSS bytes) of a live process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()
        cpu = (int(st[11]) + int(st[12])) / CLK
        hwm = 0
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024
        return cpu, hwm
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid):
    kids = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            for k in f.read().split():
                kids.append(int(k))
                kids += descendants(int(k))
    except OSError:
        pass
    return kids


def run_ours(port, mode, size, deflate):
    """Runs client.lua in the broker; returns (result tuple, extra dict)."""
    script = script_for(port, mode, size, deflate)
    cmd = [os.path.join(BUILD, "broker"), "run", "--quiet", "--mem", "512M",
           "--allow", "ws://127.0.0.1:%d/*" % port, script]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    res, extra = None, {}
    deadline = time.monotonic() + TIMEOUT
    for line in p.stdout:
        m = RES.search(line)
        if m:
            res = m
            b = proc_stat(p.pid)
            ws = [proc_stat(k) for k in descendants(p.pid)]
            ws = [x for x in ws if x]
            if b:
                extra["broker_cpu"], extra["broker_rss"] = b
            if ws:
                # the worker is the busiest descendant (an init stub may sit between)
                wk = max(ws, key=lambda x: x[0])
                extra["worker_cpu"], extra["worker_rss"] = wk
            break
        if time.monotonic() > deadline:
            break
    try:
        p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
    return res, extra


def run_one(who, port, mode, size):
    deflate = mode == "recvz"
    wire_mode = "recv" if mode == "recvz" else mode
    extra = {}
    if who == "ours":
        m, extra = run_ours(port, wire_mode, size, deflate)
    else:
        if who == "srv":
            cmd = [os.path.join(BUILD, "ref_client")] + client_args(port, "raw", size, False)
        elif who == "ref":
            cmd = [os.path.join(BUILD, "ref_client")] + client_args(port, wire_mode, size, deflate)
        elif who == "lws":
            cmd = [os.path.join(BUILD, "lws_client")] + client_args(port, wire_mode, size, deflate)
        elif who == "lws-untuned":
            cmd = [os.path.join(BUILD, "lws_client")] + client_args(
                port, wire_mode, size, deflate, ["--rxbuf", "0"])
        elif who == "node":
            cmd = ["node", os.path.join(ROOT, "tests/bench/node_client.js")] + client_args(
                port, wire_mode, size, deflate)
        elif who == "py":
            cmd = ["/usr/bin/python3", os.path.join(ROOT, "tests/bench/py_client.py")] + \
                client_args(port, wire_mode, size, deflate)
        elif who == "luahttp":
            if deflate:
                return None
            cmd = ["lua5.1", os.path.join(ROOT, "tests/bench/luahttp_client.lua")] + \
                client_args(port, wire_mode, size, False)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            return None
        m = RES.search(r.stdout)
    if not m:
        return None
    msgs, nbytes, secs = int(m.group(1)), int(m.group(2)), float(m.group(3))
    if secs <= 0 or msgs == 0:
        return None
    d = {"rate": msgs / secs, "bw": nbytes / secs, "p50": float(m.group(4)),
         "p99": float(m.group(5))}
    if extra and "broker_cpu" in extra:
        d.update(extra)
    return d


def median_of(rs):
    rs = [r for r in rs if r]
    if not rs:
        return None
    return {k: statistics.median([r[k] for r in rs if k in r]) for k in rs[0]}


def median_run(who, port, mode, size):
    return median_of([run_one(who, port, mode, size) for _ in range(RUNS)])


def interleaved(clients, port, mode, size):
    """RUNS rounds, each running every client once (so that a burst of load
    from the machine's other users hits all of them alike); medians."""
    runs = {c: [] for c in clients}
    for _ in range(RUNS):
        for c in clients:
            runs[c].append(run_one(c, port, mode, size))
    return {c: median_of(runs[c]) for c in clients}


# ---- end to end ----

MODE_TITLE = {
    "recv": "recv: server blasts, client counts (messages/s)",
    "echo": "echo: one message in flight (round trips/s, p50/p99 latency)",
    "pipe": "pipelined echo: 100 in flight (round trips/s)",
    "send": "send to the sink, counted by the server (messages/s)",
    "recvz": "recv with permessage-deflate, no context takeover (messages/s)",
}


def end_to_end(port):
    results = {}
    order = [c for c in CLIENTS if AVAILABLE.get(c)]
    missing = [c for c in CLIENTS if not AVAILABLE.get(c)]
    if missing:
        out("not installed, skipped: " + ", ".join(LABEL[c] for c in missing))
        out()
    for mode in MODES:
        out("### " + MODE_TITLE[mode])
        out()
        cols = ["size"] + [LABEL[c] for c in order]
        if mode == "recv":
            cols.append(LABEL["srv"])
        if "ours" in order:
            cols += ["broker CPU", "worker CPU", "broker RSS", "worker RSS"]
        out("| " + " | ".join(cols) + " |")
        out("|" + "---|" * len(cols))
        for size in SIZES:
            row = [size_name(size)]
            ref = None
            meds = interleaved(order + (["srv"] if mode == "recv" else []), port, mode, size)
            for c in order:
                r = meds[c]
                results[(mode, size, c)] = r
                if c == "ref":
                    ref = r
                row.append(cell(mode, r, ref, c == "ref"))
            if mode == "recv":
                r = meds["srv"]
                results[(mode, size, "srv")] = r
                row.append(cell(mode, r, ref, False))
            if "ours" in order:
                o = results.get((mode, size, "ours"))
                if o and "broker_cpu" in o:
                    # CPU over the whole worker lifetime (connect + SECS + 0.3 s wait)
                    row += ["%.2f s" % o["broker_cpu"], "%.2f s" % o["worker_cpu"],
                            "%.1f MiB" % (o["broker_rss"] / 2**20),
                            "%.1f MiB" % (o["worker_rss"] / 2**20)]
                else:
                    row += ["-"] * 4
            out("| " + " | ".join(row) + " |")
        out()
    return results


def cell(mode, r, ref, is_ref):
    if not r:
        return "-"
    s = fmt_rate(r["rate"])
    if mode in ("recv", "recvz") and r["bw"] >= 1e8:
        s += " (%s)" % fmt_bw(r["bw"])
    if mode == "echo":
        s += " p50 %.0f/p99 %.0f us" % (r["p50"], r["p99"])
    if not is_ref and ref:
        s += " **%.2fx**" % (r["rate"] / ref["rate"])
    return s


def lws_tuning(port):
    if not AVAILABLE["lws"] or "lws" not in CLIENTS:
        return
    out("### libwebsockets client: default buffers vs rx_buffer_size/pt_serv_buf_size 64 KiB")
    out()
    out("| recv size | default | tuned 64 KiB | gain |")
    out("|---|---|---|---|")
    for size in (16, 1024, 65536):
        a = median_run("lws-untuned", port, "recv", size)
        b = median_run("lws", port, "recv", size)
        if a and b:
            out("| %s | %s | %s | %.2fx |" % (size_name(size), fmt_rate(a["rate"]),
                                              fmt_rate(b["rate"]), b["rate"] / a["rate"]))
    out()


def targets(res):
    out("### Targets (ratios from this run)")
    out()
    rows = []

    def get(mode, size, who):
        return res.get((mode, size, who))

    peers = [c for c in ("lws", "node", "py", "luahttp") if AVAILABLE.get(c) and c in CLIENTS]
    for size in SIZES:
        o, best = get("recv", size, "ours"), None
        for p in peers:
            r = get("recv", size, p)
            if r and (not best or r["rate"] > best[1]["rate"]):
                best = (p, r)
        if o and best:
            rows.append(("recv %s ahead of every peer (best: %s)" % (size_name(size), LABEL[best[0]]),
                         "%.2fx best peer" % (o["rate"] / best[1]["rate"]),
                         o["rate"] > best[1]["rate"]))
            if size == 16 and lua_floor():
                # Not a target: what the API's shape costs in Lua with no I/O
                # at all (tests/bench/bench_lua_floor.c), next to that peer.
                f = lua_floor()
                rows.append(("(context) recv 16 B: Lua alone building the API's message "
                             "values, no I/O (bench_lua_floor)",
                             "%s = %.2fx best peer" % (fmt_rate(f), f / best[1]["rate"]),
                             None))
        ref = get("recv", size, "ref")
        if size >= 65536 and o and ref:
            x = o["rate"] / ref["rate"]
            rows.append(("recv %s >= 0.75x raw C" % size_name(size), "%.2fx" % x, x >= 0.75))
        o, ref = get("echo", size, "ours"), get("echo", size, "ref")
        if o and ref:
            x = o["rate"] / ref["rate"]
            rows.append(("echo %s round trips >= 0.85x raw C" % size_name(size), "%.2fx" % x,
                         x >= 0.85))
            d = o["p50"] - ref["p50"]
            rows.append(("echo %s p50 within 30 us of raw C" % size_name(size), "+%.0f us" % d,
                         d <= 30))
        oz, rz = get("recvz", size, "ours"), get("recvz", size, "ref")
        if oz and rz:
            x = oz["rate"] / rz["rate"]
            rows.append(("compressed recv %s >= 0.8x raw C inflating" % size_name(size),
                         "%.2fx" % x, x >= 0.8))
    for mode in ("pipe", "send"):
        for size in [s for s in SIZES if s <= 1024]:
            o = get(mode, size, "ours")
            bp = max((get(mode, size, p)["rate"] for p in peers if get(mode, size, p)),
                     default=None)
            if o and bp:
                x = o["rate"] / bp
                rows.append(("%s %s >= 5x best peer" % (mode, size_name(size)), "%.2fx" % x,
                             x >= 5))
    out("| target | measured | |")
    out("|---|---|---|")
    for name, val, ok in rows:
        out("| %s | %s | %s |" % (name, val, "-" if ok is None else "met" if ok else "MISSED"))
    out()


_FLOOR = []


def lua_floor():
    """Messages/s of bench_lua_floor's message-building variant (run once)."""
    if not _FLOOR:
        rate = None
        path = os.path.join(BUILD, "bench_lua_floor")
        if os.path.exists(path):
            try:
                r = subprocess.run([path, "10000000"], capture_output=True, text=True,
                                   timeout=120)
                for line in r.stdout.splitlines():
                    m = re.search(r"per message\s+[\d.]+ ns/msg\s+([\d.]+) M/s", line)
                    if m:
                        rate = float(m.group(1)) * 1e6
            except subprocess.TimeoutExpired:
                pass
        _FLOOR.append(rate)
    return _FLOOR[0]


def components():
    out("### Components")
    out()
    for tool, args in (("bench_ring", []), ("bench_ws", ["32"]), ("bench_lua_floor", ["10000000"]),
                       ("bench_spawn", ["40"]),
                      ("bench_seccomp", ["50000"]), ("bench_broker", [])):
        path = os.path.join(BUILD, tool)
        if not os.path.exists(path):
            out("(%s not built)" % tool)
            continue
        try:
            r = subprocess.run([path] + args, capture_output=True, text=True, timeout=300,
                               cwd=ROOT)
            text = r.stdout + (r.stderr if r.returncode else "")
        except subprocess.TimeoutExpired:
            text = "%s: timed out\n" % tool
        out("```")
        for line in text.rstrip().splitlines():
            out(line)
        out("```")
        out()
    # Soak: a million messages through one connection and a thousand
    # connect/close cycles through one worker, memory read from /proc.
    soak = os.path.join(ROOT, "tests", "soak", "run.sh")
    if os.path.exists(soak):
        try:
            r = subprocess.run([soak], capture_output=True, text=True, timeout=600, cwd=ROOT,
                               env=dict(os.environ, BUILD=BUILD))
            lines = [l for l in r.stdout.splitlines() if l.startswith(("soak:", "#"))]
        except subprocess.TimeoutExpired:
            lines = ["soak: timed out"]
        out("Soak (tests/soak/run.sh):")
        out()
        out("```")
        for line in lines:
            out(line)
        out("```")
        out()


def main():
    t0 = time.monotonic()
    srv, port = start_server()
    try:
        out("## make bench: %d runs of %.1f s per figure (median); ratio = figure / raw C "
            "client in the same run" % (RUNS, SECS))
        out()
        res = end_to_end(port)
        targets(res)
        lws_tuning(port)
    finally:
        srv.terminate()
        srv.wait()
    if os.environ.get("BENCH_COMPONENTS", "1") != "0":
        components()
    out("bench finished in %.0f s" % (time.monotonic() - t0))
    if OUT:
        with open(OUT, "w") as f:
            f.write("\n".join(md_lines) + "\n")
    shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
