#!/usr/bin/env python3
"""`make bench`: slowdown of memshim against the same programs run plain.

Every workload runs plain, under a preloaded library that only forwards the
allocation calls (the floor any LD_PRELOAD tool starts from), under memshim
sampled and exact (full stacks, through `memcollect run`), and under
heaptrack when it is installed; runs are interleaved, and the table shows the
median wall time of each and its ratio to plain. The table is printed and written to BENCHMARKS.md with the
command lines that produced it. Nothing is installed: missing tools are named.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RELEASE = os.path.join(ROOT, "target", "release")
MEMCOLLECT = os.path.join(RELEASE, "memcollect")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def build_forwarder(tmp):
    """The forwarding-only preload library (bench/forward.c)."""
    lib = os.path.join(tmp, "forward.so")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", lib, os.path.join(ROOT, "bench", "forward.c")],
                   check=True)
    return lib


def start_cost(sock, runs=300):
    """Median wall time of /bin/true: plain, with the shim loaded but disabled, sampled."""
    true = shutil.which("true") or "/bin/true"
    shim = os.path.join(RELEASE, "libmemshim.so")
    envs = {
        "plain": dict(os.environ),
        "shim loaded, MEMSHIM_DISABLE=1": dict(os.environ, LD_PRELOAD=shim, MEMSHIM_DISABLE="1"),
        "shim sampled, streaming to serve": dict(os.environ, LD_PRELOAD=shim, MEMSHIM_SOCKET=sock,
                                                 MEMSHIM_SAMPLE_BYTES="524288"),
    }
    times = {name: [] for name in envs}
    for _ in range(runs):
        for name, env in envs.items():
            start = time.perf_counter()
            pid = os.posix_spawn(true, [true], env)
            os.waitpid(pid, 0)
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    lines = [f"| `true`, median of {runs} interleaved runs | wall time | above plain |", "|---|---|---|"]
    for name, t in times.items():
        med = statistics.median(t)
        lines.append(f"| {name} | {med * 1000:.3f} ms | {(med - plain) * 1000:+.3f} ms |")
    return "\n".join(lines)


def build_workloads(tmp):
    alloc = os.path.join(tmp, "alloc")
    subprocess.run(["cc", "-O2", "-g", "-pthread", "-o", alloc, os.path.join(ROOT, "bench", "alloc.c")], check=True)
    demo_src = os.path.join(ROOT, "examples", "demo.c")
    workloads = [
        ("C alloc, small, 1 thread", [alloc, "small", "1", "4000000"]),
        ("C alloc, small, 2 threads", [alloc, "small", "2", "2000000"]),
        ("C alloc, mixed sizes", [alloc, "mixed", "1", "2000000"]),
        ("C alloc, realloc growth", [alloc, "realloc", "1", "1000000"]),
        ("python3 (dicts, json)", [sys.executable, "-c",
            "import json\nd={str(i):[i]*8 for i in range(200000)}\ns=json.dumps(d)\nprint(len(json.loads(s)))"]),
        ("gcc -O2 -c demo.c", ["gcc", "-O2", "-c", demo_src, "-o", os.path.join(tmp, "demo.o")]),
    ]
    if shutil.which("git") and os.path.isdir(os.path.join(ROOT, ".git")):
        workloads.append(("git log -p", ["git", "-C", ROOT, "log", "-p", "--stat"]))
    return workloads


def timed(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def symbolization_source(functions=100, sites=100):
    """C source with functions x sites distinct call paths to one allocating leaf."""
    lines = ["#include <stdlib.h>", "static void *kept[%d]; static int n;" % (functions * sites),
             "__attribute__((noinline)) static void *leaf(int size) { return malloc(size); }"]
    for f in range(functions):
        lines.append(f"__attribute__((noinline)) static void f{f}(int site) {{ switch (site) {{")
        for c in range(sites):
            # Distinct, non-linear sizes: every case stays its own call site.
            lines.append(f"  case {c}: kept[n++] = leaf({16 + (f * 7919 + c * 104729) % 997}); break;")
        lines.append("} }")
    lines.append("int main(void) {")
    lines.append(f"  for (int s = 0; s < {sites}; s++) {{")
    lines.extend(f"    f{f}(s);" for f in range(functions))
    lines.append("  }")
    lines.append("  for (int i = 0; i < n; i++) free(kept[i]);")
    lines.append("  return 0;\n}")
    return "\n".join(lines) + "\n"


def symbolization_figure():
    """Time of `memcollect report --top 10000` on a trace of 10,000 distinct sites."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "sites.c")
        prog = os.path.join(tmp, "sites")
        with open(src, "w") as f:
            f.write(symbolization_source())
        subprocess.run(["cc", "-O1", "-g", "-o", prog, src], check=True)
        trace = os.path.join(tmp, "sites.mst")
        env = dict(os.environ, MEMSHIM_SOCKET=os.path.join(tmp, "none.sock"),
                   LD_PRELOAD=os.path.join(RELEASE, "libmemshim.so"), MEMSHIM_OUTPUT=trace)
        subprocess.run([prog], env=env, check=True)
        report = subprocess.run([MEMCOLLECT, "report", "--format", "json", "--top", "1", trace],
                                check=True, capture_output=True, text=True).stdout
        sites = json.loads(report)["processes"][0]["site_count"]
        def best_of_3(cache):
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                subprocess.run([MEMCOLLECT, "report", "--top", "10000", "--output", os.devnull, trace],
                               env=dict(os.environ, MEMSHIM_SYMBOL_CACHE=cache), check=True)
                runs.append(time.perf_counter() - start)
            return min(runs)
        # Parsed afresh (no symbol cache), then read back from a cache that
        # one report filled.
        cold = best_of_3("off")
        cache = os.path.join(tmp, "symbols")
        best_of_3(cache)
        warm = best_of_3(cache)
    return "\n".join(
        f"| `memcollect report --top 10000` on {sites:,} distinct sites (symbolized: file:line, "
        f"inlined, whole command, best of 3), {label} | {t * 1000:.0f} ms ({t * 1e6 / max(sites, 1):.0f} µs/site) |"
        for label, t in [("debug information parsed", cold), ("from the symbol cache", warm)])


def collector_figures():
    """Trace size per event, collector ingest rate and memory per live block."""
    with tempfile.TemporaryDirectory() as tmp:
        alloc = os.path.join(tmp, "alloc")
        live = os.path.join(tmp, "live")
        subprocess.run(["cc", "-O2", "-pthread", "-o", alloc, os.path.join(ROOT, "bench", "alloc.c")], check=True)
        subprocess.run(["cc", "-O2", "-o", live, os.path.join(ROOT, "bench", "live.c")], check=True)
        env = dict(os.environ, MEMSHIM_SOCKET=os.path.join(tmp, "none.sock"),
                   LD_PRELOAD=os.path.join(RELEASE, "libmemshim.so"))
        trace = os.path.join(tmp, "alloc.mst")
        subprocess.run([alloc, "small", "1", "2000000"], env=dict(env, MEMSHIM_OUTPUT=trace), check=True)
        events = 4_000_000
        trace_bytes = os.path.getsize(trace)
        # What one report costs: symbols parsed, none read from a cache.
        cold = dict(os.environ, MEMSHIM_SYMBOL_CACHE="off")
        start = time.perf_counter()
        subprocess.run([MEMCOLLECT, "report", "--output", os.devnull, trace], env=cold, check=True)
        ingest = events / (time.perf_counter() - start)
        live_trace = os.path.join(tmp, "live.mst")
        subprocess.run([live], env=dict(env, MEMSHIM_OUTPUT=live_trace), check=True)
        # Peak RSS of the collector alone: measured in a child of its own.
        peak_kb = subprocess.run(
            [sys.executable, "-c",
             "import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True);"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)",
             MEMCOLLECT, "report", "--output", os.devnull, live_trace],
            env=cold, check=True, capture_output=True, text=True).stdout.split()[-1]
        per_block = int(peak_kb) * 1024 / 1_000_000
    return "\n".join([
        "| collector figure | value |",
        "|---|---|",
        f"| trace size, C microbenchmark (2 M malloc/free pairs) | {trace_bytes / events:.2f} bytes/event |",
        f"| ingest rate, `memcollect report` on that trace (one core, whole command) | {ingest / 1e6:.2f} M events/s |",
        f"| peak RSS of `memcollect report` on 1 M live blocks | {per_block:.0f} bytes per live block |",
        symbolization_figure(),
    ])


def main():
    if not os.path.exists(MEMCOLLECT):
        sys.exit("bench: build first (make build)")
    heaptrack = shutil.which("heaptrack")
    if not heaptrack:
        print("bench: heaptrack is not installed (apt-get install heaptrack); its column is left out")
    with tempfile.TemporaryDirectory() as tmp:
        # Sampled mode as a service runs it: the shim preloaded, streaming to a
        # `memcollect serve` that is already up (no per-run collector start-up
        # or report). Exact mode through `memcollect run`, collector and report
        # included. `--no-interpreter-env`: no PYTHONMALLOC=malloc, so that
        # python3 allocates the same way under every tool.
        # The collectors' symbol cache starts empty: the first exact run of a
        # workload fills it, the next ones read it, as repeated runs do.
        os.environ["MEMSHIM_SYMBOL_CACHE"] = os.path.join(tmp, "symbols")
        sock = os.path.join(tmp, "serve.sock")
        server = subprocess.Popen([MEMCOLLECT, "serve", "--socket", sock],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        sampled_env = ["env", f"LD_PRELOAD={os.path.join(RELEASE, 'libmemshim.so')}",
                       f"MEMSHIM_SOCKET={sock}", "MEMSHIM_SAMPLE_BYTES=524288"]
        forward_env = ["env", f"LD_PRELOAD={build_forwarder(tmp)}"]
        modes = [
            ("plain", lambda c: c),
            ("forwarding only (floor)", lambda c: forward_env + c),
            ("memshim sampled 512 KiB (serve)", lambda c: sampled_env + c),
            ("memshim exact (run)", lambda c: [MEMCOLLECT, "run", "--no-interpreter-env", "--output", os.devnull, "--"] + c),
        ]
        if heaptrack:
            modes.append(("heaptrack", lambda c: [heaptrack, "-o", os.path.join(tmp, "ht"), "--"] + c))
        rows = []
        for name, cmd in build_workloads(tmp):
            times = {m: [] for m, _ in modes}
            for _ in range(RUNS):
                for mode, wrap in modes:
                    times[mode].append(timed(wrap(cmd)))
            medians = {m: statistics.median(t) for m, t in times.items()}
            rows.append((name, cmd, medians))
            print(f"{name:32} " + "  ".join(f"{m}: {medians[m]*1000:8.1f} ms" for m, _ in modes), flush=True)
        start = start_cost(sock)
        print("\n" + start)
        server.terminate()
        server.wait()
        del os.environ["MEMSHIM_SYMBOL_CACHE"]
    floor, sampled = modes[1][0], modes[2][0]
    header = "| workload | plain | " + " | ".join(m for m, _ in modes[1:]) + " | sampled ÷ floor |"
    lines = [header, "|" + "---|" * (len(modes) + 2)]
    for name, _, med in rows:
        cells = [f"{med['plain']*1000:.1f} ms"]
        for m, _ in modes[1:]:
            cells.append(f"{med[m]*1000:.1f} ms ({med[m]/med['plain']:.2f}×)")
        cells.append(f"{med[sampled]/med[floor]:.2f}×")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print("\n" + table)
    collector = collector_figures()
    print("\n" + collector)
    unwind = subprocess.run(["sh", os.path.join(ROOT, "bench", "unwind.sh")],
                            check=True, capture_output=True, text=True).stdout
    print("\n" + unwind)
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as out:
        out.write("# Benchmarks\n\nProduced by `make bench` (bench/run.py): median wall time of "
                  f"{RUNS} interleaved runs per mode on this machine ({os.cpu_count()} cores), "
                  "ratio to the plain run in parentheses. *Sampled*: the shim preloaded with "
                  "MEMSHIM_SAMPLE_BYTES=524288, streaming to an already running `memcollect serve`. "
                  "*Exact*: every call with its full stack, through `memcollect run` (collector, "
                  "exit leak scan, symbolized report included; the symbol cache starts empty, so "
                  "the first run of each workload fills it and the others read it). "
                  "heaptrack: `heaptrack -o FILE -- CMD`, "
                  "its recording and interpretation included. *Forwarding only*: a preloaded "
                  "library (bench/forward.c) whose malloc, calloc, realloc and free just call "
                  "glibc's: the floor of any LD_PRELOAD tool.\n\n")
        out.write(table + "\n\nCost of a process start and exit (bench/run.py `start_cost`): what "
                  "every process pays before its first allocation.\n\n" + start + "\n\n")
        out.write(collector + "\n\n")
        out.write("Stack capture (bench/unwind.sh): ns per malloc+free pair at a call depth, "
                  "plain and under the shim (exact mode, stacks to 128 frames, trace file), "
                  "for code built without (`nofp`) and with (`fp`) frame pointers.\n\n```text\n"
                  + unwind + "```\n\nCommands:\n\n")
        for name, cmd, _ in rows:
            out.write(f"- {name}: `{' '.join(cmd)}`\n")


if __name__ == "__main__":
    main()
