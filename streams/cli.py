"""The `clarion` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from policies.loader import PolicyLoadError, load_directory
from streams.settings import Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clarion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("worker", help="run a worker against CLARION_KAFKA_BOOTSTRAP")

    demo = sub.add_parser(
        "demo", help="run the pipeline on an embedded broker and print a timeline"
    )
    demo.add_argument(
        "--events",
        type=Path,
        action="append",
        help="JSONL files to feed (default: deploy/demo/*.jsonl)",
    )
    demo.add_argument("--workdir", type=Path, default=Path("var/demo"))
    demo.add_argument("--timeout", type=float, default=120.0)

    policy = sub.add_parser("policy", help="work with policy files").add_subparsers(
        dest="policy_command", required=True
    )
    check = policy.add_parser("check", help="validate a policy directory")
    check.add_argument("directory", type=Path)

    args = parser.parse_args(argv)
    try:
        if args.command == "worker":
            from streams.worker import run_worker

            run_worker(Settings.from_env())
            return 0
        if args.command == "demo":
            from streams.demo import DEMO_DIR, DemoError, run_demo
            from streams.logging import configure

            configure("console", "warning")
            files = args.events or sorted(DEMO_DIR.glob("*.jsonl"))
            try:
                run_demo(files, args.workdir, sys.stdout, timeout=args.timeout)
            except (DemoError, TimeoutError) as exc:
                print(f"clarion demo: {exc}", file=sys.stderr)
                return 1
            return 0
        if args.command == "policy" and args.policy_command == "check":
            return _policy_check(args.directory)
    except SettingsError as exc:
        print(f"clarion: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error("unknown command")
    return 2


def _policy_check(directory: Path) -> int:
    try:
        policy = load_directory(directory)
    except PolicyLoadError as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        return 1
    print(f"{directory}: {len(policy.escalations)} escalations, version {policy.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
