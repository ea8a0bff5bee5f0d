"""Policy versions benchmark: what a published set costs a worker with many open cases.

Run: `make bench-versions` (or `python -m tests.benchmarks.versions --customers 100000`).
Prints figures; asserts nothing about speed. Two costs, measured in one run:

- putting a published set in force (`Versions.apply`: unpack, load, render every
  template), with 100,000 open cases in memory: pinning keeps the version on the
  case, so no case is visited;
- each later input of a case pinned to the old set, against the same input on a
  case whose set is in force: the look-up of the pinned set is all it adds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from channels.templates import Templates
from policies.engine import Tick, decide
from policies.loader import load_directory
from policies.state import CustomerState
from policies.versions import PolicyVersions
from schemas.events import event_from_dict
from schemas.published import PublishedPolicy
from streams.runtime.collector import for_replay
from streams.versions.files import pack
from streams.versions.in_force import Versions

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "deploy" / "policies"
T0 = datetime(2026, 11, 20, 14, tzinfo=UTC)


def opened(customers: int, policy_dir: Path) -> list[CustomerState]:
    """One open collections case per customer, opened under the bundled set."""
    policy = load_directory(policy_dir)
    states = []
    for n in range(customers):
        cid = f"C-{n:06d}"
        profile = event_from_dict(
            {
                "event_id": f"p-{n}",
                "type": "customer.profile.updated",
                "occurred_at": T0.isoformat(),
                "customer_id": cid,
                "source": "bench",
                "data": {"emails": [{"address": f"c{n}@example.com"}], "time_zones": ["UTC"]},
            }
        )
        missed = event_from_dict(
            {
                "event_id": f"m-{n}",
                "type": "payment.missed",
                "occurred_at": T0.isoformat(),
                "customer_id": cid,
                "account_id": f"A-{n}",
                "source": "bench",
                "data": {
                    "amount_due": "120.00",
                    "currency": "USD",
                    "due_date": "2026-11-15",
                    "days_past_due": 5,
                },
            }
        )
        state = decide(CustomerState(customer_id=cid), profile, T0, policy).state
        states.append(decide(state, missed, T0, policy).state)
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, for_replay():
        new_dir = Path(tmp) / "new"
        new_dir.mkdir()
        for path in POLICIES.glob("*.yaml"):
            text = path.read_text()
            (new_dir / path.name).write_text(
                text.replace("after: 3d, send: {channel: sms", "after: 4d, send: {channel: sms")
            )
        old = load_directory(POLICIES)
        new = load_directory(new_dir, POLICIES / "templates")
        assert old.version != new.version

        started = time.perf_counter()
        states = opened(args.customers, POLICIES)
        built_s = time.perf_counter() - started
        cases = sum(len(s.cases) for s in states)

        versions = Versions(old, Templates(POLICIES / "templates"), Path(tmp) / "versions")
        policies, templates = pack(new_dir, POLICIES / "templates")
        published = PublishedPolicy(
            version=new.version,
            effective_at=T0 + timedelta(hours=1),
            published_at=T0,
            author="bench",
            policies=policies,
            templates=templates,
        )
        started = time.perf_counter()
        accepted = versions.apply(published)
        apply_s = time.perf_counter() - started
        assert accepted, versions.refused

        pinned = PolicyVersions(old)
        pinned.add(T0 + timedelta(hours=1), new)
        later = T0 + timedelta(hours=2)  # nothing due yet: the input's own cost only
        timings = {}
        for name, policy, known in (
            ("a case on the set in force", old, pinned.known),
            ("a case pinned to the old set", new, pinned.known),
        ):
            started = time.perf_counter()
            for state in states:
                decide(state, Tick(state.customer_id), later, policy, known)
            timings[name] = (time.perf_counter() - started) / len(states)

    print(f"customers: {args.customers:,}, open cases: {cases:,} (built in {built_s:.1f} s)")
    print(f"putting a published set in force (unpack, load, render): {apply_s * 1000:.0f} ms")
    for name, per_input in timings.items():
        print(f"an input of {name}: {per_input * 1e6:.1f} µs")
    ratio = timings["a case pinned to the old set"] / timings["a case on the set in force"]
    print(f"pinned / in force: {ratio:.2f}x")


if __name__ == "__main__":
    main()
