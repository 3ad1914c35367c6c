#!/usr/bin/env python3
"""CPU used by the machine's other processes while bench/run.sh measures (how loaded it was).

    others.py snap FILE          # before a run: utime+stime of every process
    others.py diff FILE PID...   # after it: `others_ticks=N others_new=K` for every process
                                 # but PID... (the benchmark's own)

utime+stime (clock ticks, /proc/<pid>/stat) of the processes alive at the end (all of it for
those that started inside the window, which others_new counts: a build shows up there); a
process that started and ended inside the window is not seen. OTHERS_DEBUG=1 names them.
"""

import os
import sys


def snapshot():
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(name)] = int(fields[11]) + int(fields[12])
    return out


def main():
    if sys.argv[1] == "snap":
        with open(sys.argv[2], "w") as f:
            for pid, ticks in snapshot().items():
                f.write(f"{pid} {ticks}\n")
        return
    before = {}
    with open(sys.argv[2]) as f:
        for line in f:
            pid, ticks = line.split()
            before[int(pid)] = int(ticks)
    ours = {int(p) for p in sys.argv[3:]} | {os.getpid(), os.getppid()}
    after = snapshot()
    ticks = sum(t - before.get(p, 0) for p, t in after.items() if p not in ours)
    new = sum(1 for p in after if p not in before and p not in ours)
    if os.environ.get("OTHERS_DEBUG"):
        for p, t in after.items():
            if p not in ours and (p not in before or t - before[p] > 5):
                try:
                    cmd = open(f"/proc/{p}/cmdline").read().replace("\0", " ")[:80]
                except OSError:
                    cmd = "?"
                print(f"others.py: {p} +{t - before.get(p, 0)} {'new ' if p not in before else ''}{cmd}", file=sys.stderr)
    print(f"others_ticks={max(ticks, 0)} others_new={new}")


if __name__ == "__main__":
    main()
