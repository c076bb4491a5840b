"""How loading and saving qubes.xml scale with the number of domains.

Writes Qubes-format stores with N AppVMs cloned from the sample's
``work`` domain, then, for each N, in a fresh Python process: the time
to load the store, the time to save it, and the process's peak RSS.
The goals are printed beside the figures, with the ratio of each
figure to its goal (below 1.00 meets it).

    python bench/store_scale.py [--sizes 100,1000,5000,20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import uuid

import lxml.etree

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "..", "tests", "data", "qubes-example.xml")

#: (seconds to load, MB of peak RSS) per store size, from the issue
GOALS = {1000: (0.15, None), 5000: (0.75, 100.0)}

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import qubes
t1 = time.perf_counter()
app = qubes.Qubes(sys.argv[1])
t2 = time.perf_counter()
app.store.path = sys.argv[2]
app.store.mark_new()
app.save()
t3 = time.perf_counter()
# VmHWM, not ru_maxrss: the latter survives exec and would count the
# parent that forked this process.
with open("/proc/self/status") as status:
    rss = next(int(line.split()[1]) for line in status
               if line.startswith("VmHWM:")) / 1024
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "save": t3 - t2,
                  "rss": rss, "domains": len(app.domains)}))
"""


def make_store(sample: str, count: int, path: str) -> None:
    """Write *path*: the sample plus *count* clones of ``work``."""
    tree = lxml.etree.parse(
        sample, lxml.etree.XMLParser(remove_blank_text=True)
    )
    domains = tree.getroot().find("domains")
    work = domains.xpath("domain[properties/property[@name='name']='work']")[0]
    used = {
        int(d.xpath("string(properties/property[@name='qid'])") or 0)
        for d in domains
    }
    rng = random.Random(count)
    qid = max(used) + 1
    for number in range(count):
        clone = copy.deepcopy(work)
        name = f"app-{number}"
        clone.set("id", f"domain-{qid}")
        props = {p.get("name"): p for p in clone.find("properties")}
        props["name"].text = name
        props["qid"].text = str(qid)
        props["uuid"].text = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        for volume in clone.find("volume-config"):
            vid = volume.get("vid")
            if vid.startswith("appvms/work/"):
                volume.set(
                    "vid", vid.replace("appvms/work/", f"appvms/{name}/")
                )
        domains.append(clone)
        qid += 1
    tree.write(path, pretty_print=True, encoding="utf-8")


def measure(path: str, runs: int) -> dict[str, float]:
    """Best-of-*runs* figures of a fresh process loading *path*."""
    best: dict[str, float] = {}
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run(
                [sys.executable, "-c", CHILD, path, os.path.join(tmp, "q.xml")],
                check=True,
                capture_output=True,
                text=True,
                env=env,
            ).stdout
        figures = json.loads(out)
        for key, value in figures.items():
            best[key] = min(best.get(key, value), value)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000,20000")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'AppVMs':>7} {'load s':>8} {'goal':>6} {'ratio':>6} "
        f"{'per dom µs':>10} {'save s':>7} {'RSS MB':>7} {'goal':>5} "
        f"{'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = os.path.join(tmp, f"qubes-{size}.xml")
            make_store(SAMPLE, size, path)
            fig = measure(path, args.runs)
            load_goal, rss_goal = GOALS.get(size, (None, None))
            print(
                f"{size:>7} {fig['load']:>8.3f} {_f(load_goal):>6} "
                f"{_r(fig['load'], load_goal):>6} "
                f"{fig['load'] / fig['domains'] * 1e6:>10.1f} "
                f"{fig['save']:>7.3f} {fig['rss']:>7.1f} "
                f"{_f(rss_goal):>5} {_r(fig['rss'], rss_goal):>6}"
            )


def _f(goal: float | None) -> str:
    return "-" if goal is None else f"{goal:g}"


def _r(value: float, goal: float | None) -> str:
    return "-" if goal is None else f"{value / goal:.2f}"


if __name__ == "__main__":
    main()
