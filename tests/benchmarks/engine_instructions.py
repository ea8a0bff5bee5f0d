"""Machine instructions per engine input, counted by valgrind: the same figure on every run.

Run: `make bench-engine-instructions` (needs valgrind: `apt-get install valgrind`).

Time on this 2-core VM swings by a quarter from one minute to the next, so a
10% change in the engine cannot be seen in seconds. Callgrind counts the
instructions the interpreter executes instead. The count is the same run after
run, and it tracks time for interpreter-bound code like the engine (cache
misses are not counted). It runs the benchmark's replay twice under valgrind,
once without the replay, and prints the difference per input. To compare two
versions, run it in each checkout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from policies.loader import load_directory
from tests.benchmarks.engine import POLICIES, CountingSimulator, scaled_events


def replay(customers: int, run: bool) -> int:
    """The benchmark's replay (or only its set-up); returns how many inputs it fed."""
    policy = load_directory(POLICIES)
    events = scaled_events(customers)
    sim = CountingSimulator(policy)
    if run:
        for event in events:
            sim.apply(event)
        sim.advance(events[-1].occurred_at + timedelta(days=30))
    return sum(sim.inputs.values())


def counted(customers: int, run: bool) -> tuple[int, int]:
    """Instructions of one child process under callgrind, and the inputs it fed."""
    mode = "run" if run else "setup"
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={Path(tmp) / 'out'}",
            sys.executable,
            "-m",
            "tests.benchmarks.engine_instructions",
            "--customers",
            str(customers),
            "--inner",
            mode,
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts every run
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    inputs = re.search(r"inputs (\d+)", done.stdout)
    if found is None or inputs is None:
        raise RuntimeError(f"no count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1)), int(inputs.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--inner", choices=["setup", "run"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        print(f"inputs {replay(args.customers, args.inner == 'run')}")
        return
    setup, _ = counted(args.customers, run=False)
    total, inputs = counted(args.customers, run=True)
    print(f"customers                {args.customers:>12,}")
    print(f"inputs                   {inputs:>12,}")
    print(f"instructions per input   {(total - setup) // inputs:>12,}")


if __name__ == "__main__":
    main()
