"""Medians of bench/proxy/run.sh rounds, and podrun's ratios to its peers."""

import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(
    r"^(\S+)\s+(\S+)\s+p50=(\S+)ms p99=(\S+)ms rps=(\S+) cpu_s_per_1k=(\S+) "
    r"rss_idle_kb=(\S+) rss_loaded_kb=(\S+)$"
)
FIELDS = ["p50", "p99", "rps", "cpu", "idle", "loaded"]

samples = defaultdict(lambda: defaultdict(list))
rates = []  # in the order run.sh measured them (its RATES)
for line in open(sys.argv[1]):
    m = LINE.match(line.strip())
    if not m:
        continue
    target, rate, *values = m.groups()
    if rate not in rates:
        rates.append(rate)
    for name, v in zip(FIELDS, values):
        if v not in ("-", ""):
            samples[(target, rate)][name].append(float(v))


def med(target, rate, name):
    v = samples.get((target, rate), {}).get(name)
    return statistics.median(v) if v else None


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


targets = [t for t in ["direct", "podrun", "haproxy", "envoy"] if any((t, r) in samples for r in rates)]
rounds = max((len(s["rps"]) for s in samples.values()), default=0)
print(f"medians of {rounds} rounds\n")
print("| target | rate | p50 ms | p99 ms | req/s | CPU-s / 1000 req | req per CPU-s | RSS idle MB | RSS loaded MB |")
print("|---|---|---|---|---|---|---|---|---|")
for t in targets:
    for r in rates:
        cpu = med(t, r, "cpu")
        per_cpu_s = 1000 / cpu if cpu else None
        idle, loaded = med(t, r, "idle"), med(t, r, "loaded")
        print(
            f"| {t} | {r} | {fmt(med(t, r, 'p50'), '.3f')} | {fmt(med(t, r, 'p99'), '.3f')} "
            f"| {fmt(med(t, r, 'rps'), '.0f')} | {fmt(cpu, '.4f')} | {fmt(per_cpu_s, '.0f')} "
            f"| {fmt(idle and idle / 1024, '.1f')} | {fmt(loaded and loaded / 1024, '.1f')} |"
        )

print("\npodrun relative to each peer (same run, medians):\n")
for peer in ["haproxy", "envoy"]:
    if peer not in targets or "podrun" not in targets:
        continue
    print(f"- vs {peer}:")
    for r in rates:
        parts = []
        pc, qc = med("podrun", r, "cpu"), med(peer, r, "cpu")
        if pc and qc:
            parts.append(f"CPU per request {pc / qc:.2f}x, requests per CPU-second {qc / pc:.2f}x")
        d99 = med("direct", r, "p99")
        p99, q99 = med("podrun", r, "p99"), med(peer, r, "p99")
        if d99 is not None and p99 is not None and q99 is not None:
            parts.append(f"added p99 {p99 - d99:+.2f} ms vs {q99 - d99:+.2f} ms")
        d50 = med("direct", r, "p50")
        p50, q50 = med("podrun", r, "p50"), med(peer, r, "p50")
        if d50 is not None and p50 is not None and q50 is not None:
            parts.append(f"added p50 {p50 - d50:+.3f} ms vs {q50 - d50:+.3f} ms")
        print(f"  - {r} req/s: " + "; ".join(parts))
    pi, qi = med("podrun", rates[0], "idle"), med(peer, rates[0], "idle")
    if pi and qi:
        print(f"  - idle RSS {pi / 1024:.1f} MB vs {qi / 1024:.1f} MB ({pi / qi:.2f}x)")
