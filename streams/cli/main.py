"""The `clarion` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from streams.runtime.settings import BrokerUnreachable, Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command
    if command in ("policy", "report"):
        command = f"{command} {getattr(args, command + '_command')}"
    run = _COMMANDS.get(command)
    if run is None:
        parser.error("unknown command")
    try:
        return run(args)
    except SettingsError as exc:
        print(f"clarion: {exc}", file=sys.stderr)
        return 2
    except BrokerUnreachable as exc:
        print(f"clarion {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# Each runner imports its subcommand's module when it runs: `clarion policy check`
# should not pay for Faust and aiokafka.


def _worker(args: argparse.Namespace) -> int:
    from streams.cli.worker import run_worker
    from streams.kafka.topics import TopicLayoutError

    try:
        run_worker(Settings.from_env(**({"role": args.role} if args.role else {})))
    except TopicLayoutError as exc:
        print(f"clarion worker: {exc}", file=sys.stderr)
        return 2
    return 0


def _ledger(args: argparse.Namespace) -> int:
    import asyncio

    from streams.cli.ledger import read_trail, render
    from streams.runtime.logging import configure

    configure("console", "warning")
    trail = asyncio.run(read_trail(Settings.from_env(), args.customer))
    sys.stdout.write(render(trail, args.customer, args.format))
    return 0


def _dead_letters(args: argparse.Namespace) -> int:
    import asyncio

    from streams.cli import dead_letters
    from streams.runtime.logging import configure

    if args.replay and not args.code:
        print("clarion dead-letters: --replay needs --code", file=sys.stderr)
        return 2
    configure("console", "warning")
    settings = Settings.from_env()
    found = asyncio.run(dead_letters.read_letters(settings, args.code))
    if not args.replay:
        sys.stdout.write(dead_letters.summary(found))
        return 0
    sent, missing = asyncio.run(dead_letters.send_again(settings, found))
    print(f"sent {sent} {args.code} dead letters again")
    for why in missing:
        print(f"clarion dead-letters: not sent: {why}", file=sys.stderr)
    return 1 if missing else 0


def _state(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from streams.cli import state
    from streams.runtime.logging import configure

    configure("console", "warning")
    settings = Settings.from_env()
    found = asyncio.run(state.read_stored(settings, args.customer))
    if args.state_command == "show":
        return state.show(found, args.customer, args.raw, sys.stdout)
    if found is None or found.problem() is None:
        what = "no state stored" if found is None else "the stored state reads"
        print(f"clarion state repair: {args.customer}: {what}; nothing to repair", file=sys.stderr)
        return 1
    plan = state.proposal(found, args.from_file)
    if args.from_file is None:
        state.show(found, args.customer, False, sys.stdout)  # why, and what is left out
    if plan.state is None:
        for why in plan.refused:
            print(f"clarion state repair: {why}", file=sys.stderr)
        return 1
    if args.dry_run:
        return 0
    operator = args.operator or getpass.getuser()
    try:
        row = asyncio.run(state.repair(settings, found, plan, operator, args.reason, args.wait))
    except state.RepairError as exc:
        print(f"clarion state repair: {exc}", file=sys.stderr)
        return 1
    print(
        f"repaired {args.customer} at {row.at:%Y-%m-%d %H:%M:%SZ} ({row.extra['repair_id']}); "
        "now send their refused inputs again: "
        "clarion dead-letters --replay --code state_unreadable"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from streams.cli.demo import DEMO_DIR, DemoError, run_demo
    from streams.runtime.logging import configure

    configure("console", "warning")
    files = args.events or sorted(DEMO_DIR.glob("*.jsonl"))
    try:
        run_demo(files, args.workdir, sys.stdout, timeout=args.timeout, fmt=args.format)
    except (DemoError, TimeoutError) as exc:
        print(f"clarion demo: {exc}", file=sys.stderr)
        return 1
    return 0


def _policy_check(args: argparse.Namespace) -> int:
    from streams.app import EXAMPLE_POLICIES
    from streams.cli import policy

    directory = args.directory or EXAMPLE_POLICIES
    return policy.check(
        directory, args.templates, args.strict, sys.stdout, sys.stderr, args.lenient
    )


def _policy_simulate(args: argparse.Namespace) -> int:
    from streams.cli import policy

    if not _readable(args.events):
        return 1
    return policy.simulate_command(
        args.policies,
        args.events,
        args.until,
        args.format,
        args.templates,
        sys.stdout,
        sys.stderr,
        args.change or (),
    )


def _policy_diff(args: argparse.Namespace) -> int:
    from streams.cli import policy

    if not _readable(args.events):
        return 1
    return policy.diff_command(
        args.old, args.new, args.events, args.until, args.templates, sys.stdout, sys.stderr
    )


def _policy_publish(args: argparse.Namespace) -> int:
    import asyncio

    from streams.cli import versions
    from streams.runtime.logging import configure

    configure("console", "warning")
    settings = Settings.from_env()
    author = args.author or versions.default_author()
    if args.activate is not None:
        if args.directory is not None:
            print("clarion policy publish: a directory or --activate, not both", file=sys.stderr)
            return 2
        return asyncio.run(
            versions.activate_command(
                settings, args.activate, args.at, author, sys.stdout, sys.stderr
            )
        )
    if args.directory is None:
        print("clarion policy publish: name a directory, or --activate VERSION", file=sys.stderr)
        return 2
    return asyncio.run(
        versions.publish_command(
            settings,
            args.directory,
            args.templates,
            args.at,
            author,
            args.strict,
            args.lenient,
            sys.stdout,
            sys.stderr,
        )
    )


def _policy_versions(args: argparse.Namespace) -> int:
    import asyncio

    from streams.cli import versions
    from streams.runtime.logging import configure

    configure("console", "warning")
    return asyncio.run(versions.versions_command(Settings.from_env(), sys.stdout))


def _report_experiment(args: argparse.Namespace) -> int:
    import asyncio

    from policies.report import experiment_report
    from streams.cli import report
    from streams.runtime.logging import configure

    configure("console", "warning")
    if args.ledger is not None:
        if not _readable(args.ledger):
            return 1
        rows = report.read_file(args.ledger)
    else:
        rows = asyncio.run(report.read_topic(Settings.from_env()))
    figures = experiment_report(
        rows, args.name, args.since, args.until, args.cure_days, args.champion
    )
    report.render(figures, args.format, sys.stdout)
    return 0


def _policy_configmap(args: argparse.Namespace) -> int:
    from streams.cli import configmap, policy

    written = args.directory / configmap.KUSTOMIZATION
    try:
        text = configmap.kustomization(args.directory, args.name)
    except (configmap.ConfigMapError, OSError) as exc:
        print(f"clarion policy configmap: {exc}", file=sys.stderr)
        return 1
    if args.check:
        if written.is_file() and written.read_text() == text:
            return 0
        print(
            f"clarion policy configmap: {written} is not up to date; "
            f"run: clarion policy configmap {args.directory}",
            file=sys.stderr,
        )
        return 1
    if policy.check(args.directory, None, args.strict, sys.stdout, sys.stderr) != 0:
        print(f"clarion policy configmap: {written} not written", file=sys.stderr)
        return 1
    written.write_text(text)
    print(
        f"wrote {written}: ConfigMap {args.name} of {len(configmap.files_of(args.directory))} files"
    )
    return 0


def _policy_unpack(args: argparse.Namespace) -> int:
    from streams.cli import configmap, policy

    try:
        files = configmap.unpack(args.source, args.target)
    except (configmap.ConfigMapError, OSError) as exc:
        print(f"clarion policy unpack: {exc}", file=sys.stderr)
        return 1
    print(f"unpacked {len(files)} files from {args.source} to {args.target}")
    return policy.check(args.target, None, args.strict, sys.stdout, sys.stderr)


def _readable(events: Path | None) -> bool:
    if events is not None and not events.is_file():
        print(f"clarion: {events}: no such file", file=sys.stderr)
        return False
    return True


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "worker": _worker,
    "ledger": _ledger,
    "dead-letters": _dead_letters,
    "state": _state,
    "demo": _demo,
    "policy check": _policy_check,
    "policy simulate": _policy_simulate,
    "policy diff": _policy_diff,
    "policy publish": _policy_publish,
    "policy versions": _policy_versions,
    "policy configmap": _policy_configmap,
    "report experiment": _report_experiment,
    "policy unpack": _policy_unpack,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clarion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="run a worker against CLARION_KAFKA_BOOTSTRAP")
    worker.add_argument(
        "--role",
        choices=("all", "intake", "dispatch"),
        help="all (default, or CLARION_ROLE): one process; intake and dispatch run apart",
    )
    _add_demo(sub)
    _add_ledger(sub)
    _add_dead_letters(sub)
    _add_state(sub)
    _add_policy(sub)
    _add_report(sub)
    return parser


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report = sub.add_parser("report", help="what the ledger says").add_subparsers(
        dest="report_command", required=True
    )
    experiment = report.add_parser(
        "experiment", help="an experiment's arms side by side, from the ledger"
    )
    experiment.add_argument("name", help="the experiment's name in the policies")
    experiment.add_argument(
        "--since", type=_instant, required=True, help="cases opened at or after this instant"
    )
    experiment.add_argument("--until", type=_instant, help="cases opened before this instant")
    experiment.add_argument(
        "--ledger",
        type=Path,
        help="a JSONL ledger (policy simulate --format jsonl); default: the decisions topic",
    )
    experiment.add_argument(
        "--cure-days", type=int, default=30, help="a payment or plan within N days cures a case"
    )
    experiment.add_argument("--champion", default="champion", help="the arm to compare with")
    experiment.add_argument("--format", choices=("table", "jsonl", "html"), default="table")


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    demo.add_argument(
        "--format", choices=("table", "jsonl"), default="table", help="as policy simulate prints"
    )


def _add_ledger(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ledger = sub.add_parser(
        "ledger",
        help="one customer's audit trail from the broker: every decision and its reason, "
        "and the inputs refused",
    )
    ledger.add_argument("customer", help="a customer_id")
    ledger.add_argument(
        "--format", choices=("table", "jsonl"), default="table", help="as policy simulate prints"
    )


def _add_dead_letters(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    letters = sub.add_parser(
        "dead-letters",
        help="what intake and dispatch refused, by code; --replay sends those of one code again",
    )
    letters.add_argument(
        "--code", help="only this reject code (wrong_partition, internal_error, ...)"
    )
    letters.add_argument(
        "--replay",
        action="store_true",
        help="send the originals of --code again, to their topics, partitioned by their keys",
    )


def _add_state(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    state = sub.add_parser(
        "state",
        help="one customer's stored state: whether it reads, and repairing one that does not",
    ).add_subparsers(dest="state_command", required=True)
    show = state.add_parser(
        "show", help="whether the state reads, why not, and what a repair keeps"
    )
    show.add_argument("customer", help="a customer_id")
    show.add_argument(
        "--raw", action="store_true", help="print the stored value as JSON (contacts unmasked)"
    )
    repair = state.add_parser(
        "repair",
        help="replace an unreadable state: with what can be kept of it, or --from a file; "
        "the customer's worker applies it and records a `repaired` row",
    )
    repair.add_argument("customer", help="a customer_id")
    repair.add_argument("--reason", required=True, help="why, for the ledger (a ticket, say)")
    repair.add_argument("--from", dest="from_file", type=Path, help="the state as JSON, by hand")
    repair.add_argument("--operator", help="who repairs it (default: the login name)")
    repair.add_argument(
        "--dry-run", action="store_true", help="show what it would do, send nothing"
    )
    repair.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the worker")


def _add_policy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = sub.add_parser("policy", help="work with policy files").add_subparsers(
        dest="policy_command", required=True
    )
    check = policy.add_parser(
        "check", help="validate a policy directory (errors exit 1; --strict fails on warnings)"
    )
    check.add_argument(
        "directory", type=Path, nargs="?", help="default: the bundled example policies"
    )
    check.add_argument("--templates", type=Path, help="template directory (default: beside)")
    check.add_argument("--strict", action="store_true", help="compliance warnings fail too")
    check.add_argument(
        "--lenient",
        action="store_true",
        help="a draft: a missing opt-out instruction is a warning, not an error",
    )
    sim = policy.add_parser(
        "simulate", help="replay events on a virtual clock and print every decision"
    )
    sim.add_argument("--policies", type=Path, required=True)
    sim.add_argument("--events", type=Path, required=True, help="a JSONL file of events")
    sim.add_argument("--until", type=_instant, help=_UNTIL)
    sim.add_argument("--format", choices=("table", "jsonl"), default="table")
    sim.add_argument("--templates", type=Path, help="template directory (default: beside)")
    sim.add_argument(
        "--change",
        type=_change,
        action="append",
        metavar="AT=DIR",
        help="a policy change in the stream: DIR in force from the ISO-8601 instant AT, as "
        "policy publish --at does (repeatable)",
    )
    diff = policy.add_parser(
        "diff",
        help="what changes from one policy directory to another: the rules, and with "
        "--events the decisions they make",
    )
    diff.add_argument("old", type=Path, help="the policies deployed now")
    diff.add_argument("new", type=Path, help="the policies about to be deployed")
    diff.add_argument("--events", type=Path, help="a JSONL file of events to replay through both")
    diff.add_argument("--until", type=_instant, help=_UNTIL)
    diff.add_argument("--templates", type=Path, help="template directory (default: beside each)")
    publish = policy.add_parser(
        "publish",
        help="check a policy directory and publish it to every worker, in force from --at "
        "(default: 30 s from now); --activate VERSION publishes an earlier one again",
    )
    publish.add_argument("directory", type=Path, nargs="?", help="the policies to publish")
    publish.add_argument("--templates", type=Path, help="template directory (default: beside)")
    publish.add_argument("--activate", metavar="VERSION", help="roll back to this version")
    publish.add_argument(
        "--at", type=_instant, help="when it takes effect, on the clock the workers run on"
    )
    publish.add_argument("--author", help="who publishes it (default: the OS user)")
    publish.add_argument("--strict", action="store_true", help="compliance warnings refuse it")
    publish.add_argument(
        "--lenient", action="store_true", help="as policy check --lenient (drafts only)"
    )
    policy.add_parser("versions", help="what was published, when, by whom, and what is in force")
    cm = policy.add_parser(
        "configmap",
        help="check a policy directory, then write the kustomize Kustomization in it that "
        "makes it a ConfigMap (docs/deploy.md)",
    )
    cm.add_argument("directory", type=Path)
    cm.add_argument("--name", default="clarion-policies", help="the ConfigMap's name")
    cm.add_argument("--strict", action="store_true", help="compliance warnings refuse it too")
    cm.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if it is not up to date"
    )
    unpack = policy.add_parser(
        "unpack",
        help="put a mounted policy ConfigMap's files back in folders, then check them "
        "(a pod's init container)",
    )
    unpack.add_argument("source", type=Path, help="where the ConfigMap is mounted")
    unpack.add_argument("target", type=Path, help="where the worker reads its policies")
    unpack.add_argument("--strict", action="store_true", help="compliance warnings fail too")


_UNTIL = "fire timers up to this ISO-8601 instant (default: 30 days after the last event)"


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 instant") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone, e.g. 2026-12-31T00:00:00Z")
    return value


def _change(text: str) -> tuple[datetime, Path]:
    at, sep, directory = text.partition("=")
    if not sep or not directory:
        raise argparse.ArgumentTypeError(f"{text!r}: write AT=DIR, e.g. 2026-12-07T06:00:00Z=new/")
    return _instant(at), Path(directory)


if __name__ == "__main__":
    sys.exit(main())
