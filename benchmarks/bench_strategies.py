"""The three placement strategies on one window of generated clusters: what each leaves and
what it costs.

    python benchmarks/bench_strategies.py [--sizes 20x4,100x10,1000x50,10000x500]
                                          [--slack 0.15,0.3] [--repeats 3]

Each case is a generated cluster (correlated usage profiles over a day of 24 ticks, started
from an overloaded placement) whose hosts have ``slack`` room over the best spread's peak.
Each strategy decides once on the whole window with a move budget of one move per
container; the placement it returns is scored over that window by the evaluator
(headwater.placement.evaluate), as if applied from its first tick. Printed per strategy:
overloaded host-ticks and overload volume (CPU-ticks) before and after, moves, hosts used,
and the median decision time with its ratio to ``balance``'s, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

from headwater.placement.evaluate import moves_to, score
from headwater.placement.generate import generate
from headwater.placement.strategies.balance import Balance, BalanceConfig
from headwater.placement.strategies.consolidate import Consolidate, ConsolidateConfig
from headwater.placement.strategies.workload import WorkloadBalance, WorkloadBalanceConfig


def strategies(budget: int) -> dict:
    return {
        "balance": Balance(BalanceConfig(move_budget=budget), None),
        "workload_balance": WorkloadBalance(WorkloadBalanceConfig(move_budget=budget), None),
        "consolidate": Consolidate(ConsolidateConfig(move_budget=budget), None),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20x4,100x10,1000x50,10000x500")
    ap.add_argument("--slack", default="0.15,0.3")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(
        f"{'case':22} {'strategy':17} {'ovl h-ticks':>13} {'ovl volume':>17} {'moves':>6} "
        f"{'hosts':>9} {'seconds':>8} {'/balance':>9}"
    )
    for size in args.sizes.split(","):
        c, h = (int(n) for n in size.split("x"))
        for slack in (float(s) for s in args.slack.split(",")):
            model = generate(c, h, seed=c, slack=slack)
            before = score(model)
            base = None
            for name, strategy in strategies(c).items():
                times = []
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    plan = strategy.decide(model)
                    times.append(time.perf_counter() - started)
                seconds = statistics.median(times)
                base = seconds if base is None else base
                after = score(model, moves_to(model, plan.host_of))
                print(
                    f"{size + f' slack {slack:g}':22} {name:17} "
                    f"{before.overloaded_host_ticks:>5} -> {after.overloaded_host_ticks:<5} "
                    f"{before.overload_volume:>7.1f} -> {after.overload_volume:<7.1f} "
                    f"{after.moves:>6} {before.hosts_used:>3} -> {after.hosts_used:<3} "
                    f"{seconds:>8.3f} {seconds / base:>8.2f}x"
                )


if __name__ == "__main__":
    main()
