#!/usr/bin/env python3
"""clblast_best_sets.py: the fastest parameter sets in the output of one of
CLBlast's own tuners (clblast_tuner_xgemm or clblast_tuner_xgemm_direct, from
Debian's clblast-utils), one per line as `ln-tune --gemm-try` takes them.

    clblast_tuner_xgemm -m 8192 -n 1536 -k 384 > tuner.txt   # may be cut short
    python3 bench/clblast_best_sets.py tuner.txt 3

Reads the table the tuner prints while it runs rather than the JSON it writes
when a search ends, so a search stopped by a time limit still yields its best
sets. Only rows whose status says the results match the reference count.
"""
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def best_sets(text, count):
    names, rows = None, []
    for line in ANSI.sub("", text).splitlines():
        m = re.search(r"Parameters explored:\s*(.+)$", line)
        if m:
            names = m.group(1).split()
            continue
        cells = [c.strip() for c in line.split("|")]
        # | ID | total | params | local | global | compiles | time | GFLOPS | status |
        if names is None or len(cells) < 10 or not cells[1].isdigit():
            continue
        if "results match" not in cells[9]:
            continue
        values = cells[3].split()
        if len(values) != len(names):
            continue
        try:
            gflops = float(cells[8])
        except ValueError:
            continue
        rows.append((gflops, " ".join("%s=%s" % nv for nv in zip(names, values))))
    rows.sort(key=lambda r: -r[0])
    seen, out = set(), []
    for gflops, text_set in rows:
        if text_set not in seen:
            seen.add(text_set)
            out.append((gflops, text_set))
        if len(out) == count:
            break
    return out


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: clblast_best_sets.py TUNER_OUTPUT [COUNT]")
    count = int(sys.argv[2]) if len(sys.argv) == 3 else 1
    try:
        with open(sys.argv[1], errors="replace") as f:
            sets = best_sets(f.read(), count)
    except OSError as e:
        sys.exit("clblast_best_sets.py: cannot read the tuner's output: %s" % e)
    for gflops, text_set in sets:
        sys.stderr.write("%.1f GFLOP/s: %s\n" % (gflops, text_set))
        print(text_set)
    if not sets:
        sys.exit("clblast_best_sets.py: no measured set whose results match in %s" % sys.argv[1])


if __name__ == "__main__":
    main()
