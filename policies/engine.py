"""The escalation engine: ``(state, input, now, policy) -> (state, decisions, notifications)``.

Pure: no clock, no I/O. The Faust agents and the offline simulator both call
`decide`, so what a simulation shows is what production does.

An input is an account event, a delivery receipt, or a `Tick`. Every call
first fires the timers due by `now` (a case's pending steps live in the
state, so they survive whatever the driver survives), then applies the input,
then fires what the input made due (a new case's first steps, a resumed
case's overdue ones). `CustomerState.due` tells the driver when to call again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from policies.calendar import due_after
from policies.conditions import holds
from policies.contacts import Blocked, Target, candidates, category_block, reach
from policies.experiments import assign
from policies.guards import GuardBlock, History, check, lookback, zones
from policies.model import HOLDOUT, Category, Duration, Escalation, Ladder, PolicySet, Send, Step
from policies.state import (
    Case,
    Cease,
    ConsentRecord,
    Contact,
    Conversation,
    CustomerState,
    Pending,
    SentRef,
)
from schemas.customer import ConsentChange, Preferences, Profile, Reply
from schemas.decisions import Action, Decision
from schemas.events import CeaseRequested, Event
from schemas.notifications import DeliveryReceipt, NotificationRequest, notification_id
from schemas.types import Channel, Priority
from schemas.unchecked import replaced, unchecked

_MAX_FIRINGS = 10_000
"""A safety stop: no customer has this many steps due at one instant."""

CONFIRM_WITHIN = timedelta(minutes=5)
"""The one text confirming a revocation goes within this of the reply (47 CFR 64.1200(a)(10))."""

CONSENT = "consent"
"""The escalation and category a revocation's confirmation goes under: it belongs to no case."""

_DONE = frozenset({"delivered", "completed", "answered"})
_PERMANENT = frozenset({"failed", "undelivered", "bounced", "dropped"})
_UNANSWERED = frozenset({"busy", "no-answer"})


@dataclass(frozen=True, slots=True)
class Tick:
    """Fire whatever is due for this customer by `now`; no other input."""

    customer_id: str


Input = Event | DeliveryReceipt | Tick


@dataclass(frozen=True, slots=True)
class Outcome:
    state: CustomerState
    decisions: list[Decision] = field(default_factory=list)
    """Ledger rows to record now, in order."""
    notifications: list[NotificationRequest] = field(default_factory=list)
    """One per `sent` decision: what the dispatcher is asked to deliver."""


Pinned = Callable[[str], PolicySet | None]
"""A policy set by its version, if the driver still has it: what an open case was opened
under (`policies.versions.PolicyVersions.known`)."""


def _none(version: str) -> PolicySet | None:
    return None


def decide(
    state: CustomerState, item: Input, now: datetime, policy: PolicySet, pinned: Pinned = _none
) -> Outcome:
    """Apply one input for the customer `state` belongs to, at `now`, under `policy` (the
    version in force at `now`).

    A case keeps the ladders of the version it opened under (`pinned` finds it) until it
    closes; the guards, categories and calendar are always those of `policy`. A case
    whose version `pinned` does not know runs on `policy`'s escalation of the same name.
    """
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    run = _Run(state, policy, now.astimezone(UTC), pinned)
    run.close_orphans()
    run.restart_on_change()
    run.fire_due()
    if isinstance(item, Event):
        run.apply_event(item)
        run.fire_due()
    elif isinstance(item, DeliveryReceipt):
        run.apply_receipt(item)
        run.fire_due()
    return Outcome(run.finish(), run.decisions, run.notifications)


@dataclass(frozen=True, slots=True)
class _Sent:
    target: Target
    fallback_from: Blocked | GuardBlock | None


@dataclass(frozen=True, slots=True)
class _Deferred:
    block: GuardBlock
    channel: Channel


class _Run:
    """One call of `decide`: the working copy of the state and the rows it produced."""

    def __init__(
        self, state: CustomerState, policy: PolicySet, now: datetime, pinned: Pinned = _none
    ) -> None:
        self.state, self.policy, self.now, self.pinned = state, policy, now, pinned
        self.cases: dict[str, Case] = dict(state.cases)
        self.owned: set[str] = set()
        """Cases this run copied (or opened), and so may change in place."""
        self.contacts: list[Contact] = list(state.contacts)
        self.conversations: list[Conversation] = list(state.conversations)
        self.decisions: list[Decision] = []
        self.notifications: list[NotificationRequest] = []
        self.cause: str | None = None

    # -- the result -------------------------------------------------------------

    def finish(self) -> CustomerState:
        horizon = self.now - _index(self.policy).lookback
        unchanged = (
            not self.owned
            and len(self.cases) == len(self.state.cases)
            and len(self.contacts) == len(self.state.contacts)
            and len(self.conversations) == len(self.state.conversations)
            and all(c.at > horizon for c in self.contacts[:1])
            and all(c.at > horizon for c in self.conversations[:1])
        )
        if unchanged:
            return self.state
        return replaced(
            self.state,
            cases=self.cases,
            contacts=tuple(c for c in self.contacts if c.at > horizon),
            conversations=tuple(c for c in self.conversations if c.at > horizon),
        )

    def record(self, action: Action, reason: str, case: Case | None, **fields: Any) -> None:
        row = {
            "at": self.now,
            "customer_id": self.state.customer_id,
            "action": action,
            "reason": reason,
            "cause_event_id": self.cause or (case.cause_event_id if case else None),
            "policy_version": self.policy.version,
        }
        if case is not None:
            chose = self.rules(case).version
            if chose != self.policy.version:
                row["policy_version"], row["guards_version"] = chose, self.policy.version
            row["account_id"] = case.account_id
            row["case_id"] = case.case_id
            row["escalation"] = case.escalation
            row["ladder"] = case.ladder
            if case.arm is not None:
                row["experiment"], row["arm"] = case.experiment, case.arm
        row.update(fields)
        self.decisions.append(unchecked(Decision, row))

    def edit(self, case_id: str) -> Case:
        """The case, to change in place: copied on its first change in this run.

        So the state `decide` was given never changes, and a case is copied at
        most once per input however many times it changes.
        """
        case = self.cases[case_id]
        if case_id not in self.owned:
            case = self.cases[case_id] = case.copy()
            self.owned.add(case_id)
        return case

    # -- the rules a case runs on ----------------------------------------------

    def rules(self, case: Case) -> PolicySet:
        """The set whose ladders a case follows: the one it opened under, while the driver
        has it and it has the case's escalation; else the set in force."""
        if case.version is None or case.version == self.policy.version:
            return self.policy
        opened = self.pinned(case.version)
        if opened is None or case.escalation not in opened.escalations:
            return self.policy
        return opened

    def escalation(self, case: Case) -> Escalation | None:
        return self.rules(case).escalations.get(case.escalation)

    def category(self, case: Case, name: str) -> Category:
        """A category's rules from the set in force (they are guards); from the case's own
        set only when the one in force no longer has the category."""
        found = self.policy.categories.get(name)
        return found if found is not None else self.rules(case).categories[name]

    def close_orphans(self) -> None:
        """Close each case whose escalation neither its own set nor the one in force has.

        A case keeps the set it opened under while the driver has that set; one left
        without its escalation (a deploy removed it, and the old set is gone with a
        restart) is closed, on the ledger, rather than failing every input of its
        customer."""
        for case in list(self.cases.values()):
            if self.escalation(case) is None:
                detail = f"the policies in force ({self.policy.version}) have no {case.escalation}"
                self.record("closed", "escalation_removed", case, detail=detail)
                del self.cases[case.case_id]

    def restart_on_change(self) -> None:
        """Move each open case whose escalation, in the set in force, says
        `on_policy_change: restart` to that set's ladder of the same name.

        It goes on from the first step it has not run, by step name, at the new ladder's
        instants; a later step it ran is not run again, and a step it was waiting on keeps
        what of it already went: a partly sent step sends only the rest, and one whose
        channels changed sends only what reaches none of the channels it went on."""
        for case in list(self.cases.values()):
            if case.version is None or case.version == self.policy.version:
                continue
            esc = self.policy.escalations.get(case.escalation)
            new = _ladder(esc, case.ladder) if esc is not None else None
            if esc is None or esc.on_policy_change != "restart" or new is None:
                continue
            opened = self.escalation(case)
            old = _ladder(opened, case.ladder) if opened is not None else None
            old = old or new
            waiting = {old.step_key(p.step): p for p in case.pending if p.step < len(old.steps)}
            ran = {old.step_key(i) for i in range(len(old.steps))} - set(waiting)
            keys = [new.step_key(j) for j in range(len(new.steps))]
            first = next((j for j, key in enumerate(keys) if key not in ran), len(keys))
            current = self.edit(case.case_id)
            current.version = self.policy.version
            moved: list[Pending] = []
            for j in range(first, len(keys)):
                if keys[j] in ran:
                    continue
                due = self.after(current.origin, new.steps[j].after)
                held = waiting.get(keys[j])
                send = new.steps[j].send
                if held is not None and old.steps[held.step].send == send:
                    moved.append(replace(held, step=j, due=due))  # its groups are the same
                elif held is not None and send is not None:
                    rest = self.unsent_groups(current, held.step, send)
                    if rest is None or rest:  # (): what the new step sends went already
                        moved.append(Pending(j, due, groups=rest))
                else:
                    moved.append(Pending(j, due))
            current.pending = tuple(moved)
            where = keys[first] if first < len(keys) else "its end"
            detail = f"to the {new.name} ladder of {self.policy.version}, from {where}"
            self.record("switched", "policy_change", current, detail=detail)
            if not current.pending:
                self.record("closed", "ladder_complete", current)
                del self.cases[case.case_id]

    # -- timers -----------------------------------------------------------------

    def fire_due(self) -> None:
        """Run every pending step due by now, earliest first."""
        self.cause = None
        now = self.now
        for _ in range(_MAX_FIRINGS):
            first: tuple[datetime, int, str] | None = None
            for case in self.cases.values():
                if case.paused_at is not None:
                    continue
                for p in case.pending:
                    if p.due <= now and (first is None or (p.due, p.step, case.case_id) < first):
                        first = (p.due, p.step, case.case_id)
            if first is None:
                return
            due, step, case_id = first
            case = self.edit(case_id)
            pending = next(p for p in case.pending if p.step == step and p.due == due)
            case.pending = tuple(p for p in case.pending if p is not pending)
            self.run_step(case_id, pending)
            after = self.cases.get(case_id)
            if after is not None and not after.pending:
                self.record("closed", "ladder_complete", after)
                del self.cases[case_id]
        raise RuntimeError(f"more than {_MAX_FIRINGS} steps due at {self.now.isoformat()}")

    # -- inputs -----------------------------------------------------------------

    def apply_event(self, event: Event) -> None:
        self.cause = event.event_id
        self.remember(event)
        if isinstance(event.data, Reply):
            self.reply(event.data)
        for case in list(self.cases.values()):
            if event.type in _index(self.rules(case)).moves[case.escalation] and _concerns(
                case, event
            ):
                self.follow(case, event)
        for name, esc in _index(self.policy).triggers.get(event.type, ()):
            self.open_case(name, esc, event)

    def remember(self, event: Event) -> None:
        data = event.data
        if isinstance(data, Profile | Preferences | ConsentChange):
            self.wake_waiting()  # a contact point may be known now
        if isinstance(data, Profile):
            self.state = replaced(self.state, profile=data)
        elif isinstance(data, Preferences):
            merged = data.merged_into(self.state.preferences)
            self.state = replaced(self.state, preferences=merged)
        elif isinstance(data, ConsentChange):
            record = ConsentRecord(
                channel=data.channel,
                address=data.address,
                status=data.status,
                source=data.source,
                at=event.occurred_at,
            )
            key = CustomerState.consent_key(data.channel, data.address)
            consents = {**self.state.consents, key: record}
            self.state = replaced(self.state, consents=consents)
            self.consent_changed(event, data)
        elif isinstance(data, CeaseRequested):
            cease = Cease(
                at=self.now,
                account_id=event.account_id,
                channel=data.channel if data.scope == "channel" else None,
            )
            self.state = replaced(self.state, ceases=(*self.state.ceases, cease))

    def consent_changed(self, event: Event, change: ConsentChange) -> None:
        """On the ledger, with the customer's words when a reply revoked it.

        A reply that may be a revocation has revoked consent already (it fails
        closed); an agent reads the words and can restore it by asking.
        """
        case = self.cases.get(change.case_id) if change.case_id else None
        detail = f"{change.channel} consent {change.status} by {change.source}"
        if change.reply is not None:
            detail += f": {_quoted(change.reply)}"
        fields = {"channel": change.channel, "recipient": change.address, "detail": detail}
        self.record("consent", change.status, case, **fields)
        if change.status != "revoked":
            return
        if not change.certain:
            said = _quoted(change.reply or "")
            why = f"a reply that may revoke {change.channel} consent (revoked meanwhile): {said}"
            self.record("handoff", "possible_revocation", case, **{**fields, "detail": why})
        if change.confirm:
            self.confirm_revocation(event, change)

    def confirm_revocation(self, event: Event, change: ConsentChange) -> None:
        """The one confirmation the FCC allows: within five minutes, from the policy's template."""
        template = self.policy.revocation_confirmation
        if template is None or change.channel != "sms":
            return
        case_id = f"revocation/{event.event_id}"[:128]
        fields: dict[str, Any] = {
            "case_id": case_id,
            "escalation": CONSENT,
            "ladder": "revocation",
            "step": 0,
            "channel": "sms",
            "template": template,
            "recipient": change.address,
        }
        late = self.now - event.occurred_at
        if late > CONFIRM_WITHIN:
            why = f"read {late} after the reply; a confirmation may go only within {CONFIRM_WITHIN}"
            self.record("suppressed", "confirmation_too_late", None, **fields, detail=why)
            return
        locale = self.locale()
        nid = notification_id(self.state.customer_id, case_id, 0, "sms", change.address)
        extra = {"locale": locale, "category": CONSENT}
        self.record(
            "sent", "revocation_confirmation", None, **fields, notification_id=nid, extra=extra
        )
        self.notifications.append(
            unchecked(
                NotificationRequest,
                {
                    **fields,
                    "notification_id": nid,
                    "customer_id": self.state.customer_id,
                    "account_id": event.account_id,
                    "category": CONSENT,
                    "locale": locale,
                    "requested_at": self.now,
                    "policy_version": self.policy.version,
                    "cause_event_id": event.event_id,
                    "priority": "urgent",  # the rule's five minutes
                    "context": {
                        "data": {},
                        "account_id": event.account_id,
                        "customer": {"name": self.state.profile.name, "locale": locale},
                    },
                },
            )
        )

    def wake_waiting(self) -> None:
        """Steps held for a contact point fall due now, to be tried again (`fire_due` next)."""
        for case in list(self.cases.values()):
            if any(p.waiting_since is not None and p.due > self.now for p in case.pending):
                current = self.edit(case.case_id)
                current.pending = tuple(
                    # Never before it was held: an input stamped earlier (read late,
                    # on the event clock) moves it to when it was held, not back in time.
                    replace(p, due=max(self.now, p.waiting_since))
                    if p.waiting_since is not None
                    else p
                    for p in current.pending
                )

    def reply(self, reply: Reply) -> None:
        """A customer's free-text answer: on the ledger, and with an agent where the policy says."""
        case = self.cases.get(reply.case_id) if reply.case_id else None
        said = _quoted(reply.text)
        reason = "customer_reply" if case is not None else "customer_reply_no_open_case"
        self.record("replied", reason, case, channel=reply.channel, detail=said)
        esc = self.escalation(case) if case is not None else None
        if esc is not None and esc.on_reply == "agent":
            self.record("handoff", "customer_reply", case, detail=said)

    def follow(self, case: Case, event: Event) -> None:
        """What an event on a case's account does to it: stop, pause, resume or switch."""
        esc = self.escalation(case)
        if esc is None:
            return
        awaited = _index(self.rules(case)).awaited[case.escalation]
        if event.type in awaited and event.type not in case.received:
            case = self.edit(case.case_id)
            case.received = (*case.received, event.type)
        if event.type in esc.stop_on:
            self.record("stopped", event.type, case, detail=f"{event.type} ({event.event_id})")
            del self.cases[case.case_id]
            return
        if event.type in esc.pause_on and case.paused_at is None:
            case = self.edit(case.case_id)
            case.paused_at, case.resume_on = self.now, esc.pause_on[event.type]
            self.record("paused", event.type, case, detail=f"until {case.resume_on}")
        elif event.type == case.resume_on and case.paused_at is not None:
            held = self.now - case.paused_at
            case = self.edit(case.case_id)
            case.pending = tuple(replace(p, due=p.due + held) for p in case.pending)
            case.paused_at, case.resume_on, case.origin = None, None, case.origin + held
            self.record("resumed", event.type, case, detail=f"every remaining step moves {held}")
        if event.type in esc.switch_on:
            target = esc.switch_on[event.type]
            ladder = _ladder(esc, target)
            if ladder is None or target == case.ladder:
                return
            case = self.edit(case.case_id)
            case.ladder, case.origin = target, self.now
            case.pending = self.schedule(ladder, case)
            self.record("switched", event.type, case, detail=f"to the {target} ladder")

    def open_case(self, name: str, esc: Escalation, event: Event) -> None:
        experiment, arm = esc.experiment, None
        if experiment is not None:
            chosen = assign(experiment, self.state.customer_id)
            arm = next((a for a in experiment.arms if a.name == chosen), None)
            if arm is not None and arm.escalation is not None:  # the arm's own escalation
                name, esc = arm.escalation, self.policy.escalations[arm.escalation]
        by_account = esc.case == "account" and event.account_id is not None
        scope = event.account_id if by_account else None
        case_id = f"{name}/{scope or event.customer_id}/{event.event_id}"
        open_now = [
            c for c in self.cases.values() if c.escalation == name and c.account_id == scope
        ]
        draft = Case(
            case_id=case_id,
            escalation=name,
            ladder="-",
            account_id=scope,
            opened_at=self.now,
            origin=self.now,
            cause_event_id=event.event_id,
            data=event.data.model_dump(mode="json"),
            version=self.policy.version,
        )
        if open_now and esc.on_retrigger == "keep":
            self.record("suppressed", "case_open", open_now[0], detail=f"{name} is already open")
            return
        for old in open_now:
            self.record("closed", "restarted", old, detail=f"{event.type} ({event.event_id})")
            del self.cases[old.case_id]
        category = self.policy.categories[esc.category]
        if category.honours_cease and self.ceased(scope, None):
            self.record("suppressed", "cease", draft, detail="the customer asked us to cease")
            return
        facts = self.facts(draft)
        ladder = next((lad for lad in _openable(esc) if holds(lad.when, facts)), None)
        if experiment is not None:
            draft.experiment = experiment.name
            draft.arm = arm.name if arm is not None else HOLDOUT
            if arm is not None and arm.ladder is not None:
                ladder = _ladder(esc, arm.ladder)  # the arm's, whatever `when` chose
        if ladder is None:
            self.record("suppressed", "no_ladder", draft, detail="no ladder's `when` holds")
            return
        draft.ladder, draft.pending = ladder.name, self.schedule(ladder, draft)
        self.cases[case_id] = draft
        self.owned.add(case_id)
        self.record("opened", event.type, draft)

    def apply_receipt(self, receipt: DeliveryReceipt) -> None:
        """A delivery counts toward nothing; a permanent failure moves the step to its fallback."""
        found = next((c for c in self.cases.values() if receipt.notification_id in c.sent), None)
        self.cause = receipt.notification_id
        if found is None:
            self.after_close(receipt)
            return
        ref = found.sent[receipt.notification_id]

        def row(action: Action, reason: str, detail: str | None = None) -> None:
            nid = receipt.notification_id
            step, channel = ref.step, ref.channel
            self.record(
                action,
                reason,
                found,
                step=step,
                channel=channel,
                notification_id=nid,
                detail=detail,
            )

        if receipt.status in _DONE:
            row("delivered", receipt.status)
            if receipt.channel == "voice" and receipt.answered_by == "human":
                self.conversations.append(Conversation(at=self.now, account_id=found.account_id))
        elif receipt.status in _UNANSWERED:
            row("failed", receipt.status)  # rang out: the ladder's next rung answers that
        elif receipt.status in _PERMANENT:
            if receipt.receipt_id is not None:
                # A provider's callback: its failure is news to the ledger. (The
                # dispatcher's own receipts carry no id; it wrote their row itself.)
                code = f" ({receipt.error_code})" if receipt.error_code else ""
                said = f"{receipt.provider} reported {receipt.status}{code}"
                row("failed", receipt.reason or receipt.status, said)
            self.learn(receipt)
            tried = tuple(
                r.channel
                for r in found.sent.values()
                if r.step == ref.step and r.group == ref.group
            )
            self.run_step(
                found.case_id,
                Pending(step=ref.step, due=self.now, groups=(ref.group,), tried=tried),
            )

    def after_close(self, receipt: DeliveryReceipt) -> None:
        """A receipt for a case that has closed: still on the ledger, and an answer still counts.

        A call on a ladder's last rung closes its case when it is placed; the
        person who answers it has had a conversation all the same.
        """
        if receipt.status in _DONE:
            self.record(
                "delivered",
                receipt.status,
                None,
                account_id=receipt.account_id,
                channel=receipt.channel,
                notification_id=receipt.notification_id,
                detail="after its case closed",
            )
            if receipt.channel == "voice" and receipt.answered_by == "human":
                self.conversations.append(Conversation(at=self.now, account_id=receipt.account_id))
        elif receipt.effect is not None:
            self.learn(receipt)

    def learn(self, receipt: DeliveryReceipt) -> None:
        """What a permanent failure says of the address: opted out, or never usable."""
        if receipt.effect is None or not receipt.recipient:
            return
        record = ConsentRecord(
            channel=receipt.channel,
            address=receipt.recipient,
            status="revoked" if receipt.effect == "opted_out" else "unusable",
            source=f"{receipt.provider}:{receipt.reason or receipt.error_code or receipt.status}",
            at=self.now,
        )
        key = CustomerState.consent_key(receipt.channel, receipt.recipient)
        self.state = replaced(self.state, consents={**self.state.consents, key: record})

    # -- steps ------------------------------------------------------------------

    def schedule(self, ladder: Ladder, case: Case) -> tuple[Pending, ...]:
        return tuple(
            Pending(step=i, due=self.after(case.origin, step.after))
            for i, step in enumerate(ladder.steps)
        )

    def after(self, origin: datetime, length: Duration) -> datetime:
        """`length` past `origin` on the customer's calendar (business days in their zone)."""
        zone = zones(self.state, self.policy)[0]
        return due_after(origin, length, zone, _index(self.policy).holidays)

    def run_step(self, case_id: str, pending: Pending) -> None:
        case = self.cases[case_id]
        esc = self.escalation(case)
        assert esc is not None  # close_orphans closed the case otherwise
        ladder = _ladder(esc, case.ladder)
        if ladder is None or pending.step >= len(ladder.steps):
            return
        index, step = pending.step, ladder.steps[pending.step]
        if step.when is not None and not holds(step.when, self.facts(case)):
            self.record("suppressed", "step_condition", case, step=index, detail="`when` fails")
            return
        seen = [t for t in step.unless_received if t in case.received]
        if seen:
            self.record("suppressed", "already_received", case, step=index, detail=seen[0])
            return
        if case.arm == HOLDOUT:
            detail = f"the hold-out arm of {case.experiment}: nothing is sent"
            self.record("suppressed", "holdout", case, step=index, detail=detail)
            return
        if step.handoff is not None:
            self.record("handoff", step.handoff, case, step=index)
            return
        assert step.send is not None
        self.run_send(case, esc, step, step.send, pending)

    def run_send(self, case: Case, esc: Escalation, step: Step, send: Send, p: Pending) -> None:
        index = p.step
        category = self.category(case, esc.category)
        common = {"step": index, "template": send.template}
        if category.honours_cease and self.ceased(case.account_id, None):
            self.record(
                "suppressed", "cease", case, detail="the customer asked us to cease", **common
            )
            return
        refused = category_block(self.state, esc.category, category)
        if refused is not None:
            self.record("suppressed", refused.reason, case, detail=refused.detail, **common)
            return
        groups = self.groups(send, case)
        deferred: list[tuple[int, GuardBlock]] = []
        waiting: list[int] = []
        deadline = self.deadline(case, step)
        for gi in p.groups if p.groups is not None else range(len(groups)):
            channels, recipient = groups[gi]
            result = self.try_group(
                case, esc.category, category, step, channels, recipient, p.tried, deadline
            )
            if isinstance(result, _Sent):
                self.send(case, esc.category, send, index, gi, result)
            elif isinstance(result, _Deferred) and result.block.until is not None:
                deferred.append((gi, result.block))
                self.record(
                    "deferred",
                    result.block.reason,
                    case,
                    channel=result.channel,
                    until=result.block.until,
                    detail=result.block.detail,
                    **common,
                )
            elif isinstance(result, _Deferred):
                self.record(
                    "suppressed",
                    result.block.reason,
                    case,
                    channel=result.channel,
                    detail=result.block.detail,
                    **common,
                )
            elif isinstance(result, Blocked) and result.reason == "deadline":
                self.record("handoff", "letter", case, detail=result.detail, **common)
            elif isinstance(result, Blocked) and self.lacks_contact(
                esc.category, category.collects_debt, channels, recipient, p.tried
            ):
                if self.hold_for_contact(case, esc, category, result, p, common, deadline):
                    waiting.append(gi)
            elif isinstance(result, Blocked) and category.required and result.reason != "cease":
                self.record("handoff", "letter", case, detail=result.detail, **common)
            else:
                self.record(
                    "suppressed",
                    result.reason,
                    case,
                    channel=result.channel,
                    detail=result.detail,
                    **common,
                )
        if deferred:
            until = min(block.until for _, block in deferred if block.until is not None)
            later = Pending(
                step=index, due=until, groups=tuple(gi for gi, _ in deferred), tried=p.tried
            )
            current = self.edit(case.case_id)
            current.pending = (*current.pending, later)
        if waiting:
            since = p.waiting_since or self.now
            held = Pending(
                step=index,
                due=self.contact_deadline(esc, since, deadline),
                groups=tuple(waiting),
                tried=p.tried,
                waiting_since=since,
            )
            current = self.edit(case.case_id)
            current.pending = (*current.pending, held)

    def lacks_contact(
        self,
        category: str,
        debt: bool,
        channels: list[Channel],
        recipient: str | None,
        tried: tuple[Channel, ...],
    ) -> bool:
        """No contact point yet for any channel the group allows (or no profile at all);
        an opt-out or a revoked consent is an answer, not a wait."""
        if recipient is not None:
            return False
        profile = self.state.profile
        if not channels:
            return not profile.phones and not profile.emails
        left = [c for c in channels if c not in tried]
        found = [reach(self.state, c, category, debt=debt) for c in left]
        return bool(left) and all(
            isinstance(r, Blocked) and r.reason == "no_contact_point" for r in found
        )

    def contact_wait(self, esc: Escalation) -> Duration:
        return esc.contact_wait or self.policy.contact_wait

    def contact_deadline(
        self, esc: Escalation, since: datetime, deadline: datetime | None = None
    ) -> datetime:
        """Until when a step waits for a contact point: its wait, or its deadline if sooner."""
        until = self.after(since, self.contact_wait(esc))
        return until if deadline is None else min(until, deadline)

    def deadline(self, case: Case, step: Step) -> datetime | None:
        """When a step with a `deadline` must have gone: counted from the case's opening,
        which is never after its first message, so a notice the law times from the
        first communication (Reg F 1006.34: within five days) is in time."""
        return None if step.deadline is None else self.after(case.opened_at, step.deadline)

    def hold_for_contact(
        self,
        case: Case,
        esc: Escalation,
        category: Category,
        blocked: Blocked,
        p: Pending,
        common: dict[str, Any],
        deadline: datetime | None,
    ) -> bool:
        """Hold a step that found no contact point, until one is known or the wait (or the
        step's deadline) runs out; then a letter for a required category or a step with a
        deadline, else suppressed. Whether it is held."""
        until = self.contact_deadline(esc, p.waiting_since or self.now, deadline)
        wait = self.contact_wait(esc)
        if until > self.now:
            said = f"{blocked.detail}; held for a profile or contact change, {wait} at most"
            self.record(
                "deferred",
                "awaiting_contact",
                case,
                channel=blocked.channel,
                until=until,
                detail=said,
                **common,
            )
            return True
        said = f"{blocked.detail}, and none came within {wait}"
        if deadline is not None and until >= deadline:
            said = f"{blocked.detail}, and none came before the step's deadline"
        if category.required or deadline is not None:
            self.record("handoff", "letter", case, detail=said, **common)
        else:
            self.record(
                "suppressed",
                "no_contact_point",
                case,
                channel=blocked.channel,
                detail=said,
                **common,
            )
        return False

    def unsent_groups(self, case: Case, step: int, send: Send) -> tuple[int, ...] | None:
        """The groups of `send` with no channel that old step `step` of the case went on;
        None (all of them, as found when it runs) when nothing of that step went."""
        went = {ref.channel for ref in case.sent.values() if ref.step == step}
        if not went:
            return None
        groups = self.groups(send, case)
        return tuple(gi for gi, (channels, _) in enumerate(groups) if not went & set(channels))

    def groups(self, send: Send, case: Case) -> list[tuple[list[Channel], str | None]]:
        """Channel groups (each tried in order until one works; all groups go), with recipients."""
        found: list[tuple[list[Channel], str | None]] = []
        if "current" in send.to:
            found = [(group, None) for group in candidates(self.state, send)]
        if "previous" in send.to:
            previous = self.previous_contact(case)
            if previous is not None:
                found.append(([previous.channel], previous.recipient))
        return found

    def try_group(
        self,
        case: Case,
        category_name: str,
        category: Category,
        step: Step,
        channels: list[Channel],
        recipient: str | None,
        tried: tuple[Channel, ...],
        deadline: datetime | None = None,
    ) -> _Sent | _Deferred | Blocked:
        """The first channel that reaches the customer and passes the guards, else why not.

        With a `deadline`, a channel the guards would hold past it is passed over for the
        next one, and when every channel is, the answer is `deadline` (a letter goes)."""
        first: Blocked | GuardBlock | None = None
        first_channel: Channel | None = None
        late: GuardBlock | None = None
        guard_hit: _Deferred | None = None
        for channel in channels:
            if channel in tried:
                failed = Blocked(channel, "delivery_failed", f"{channel} failed for this step")
                first, first_channel = first or failed, first_channel or channel
                continue
            if category.honours_cease and self.ceased(case.account_id, channel):
                found: Target | Blocked = Blocked(channel, "cease", f"cease covers {channel}")
            elif recipient is not None:
                found = Target(channel, recipient)
            else:
                found = reach(self.state, channel, category_name, debt=category.collects_debt)
            if isinstance(found, Blocked):
                first, first_channel = first or found, first_channel or channel
                continue
            block = check(
                self.state,
                History(self.contacts, self.conversations),
                self.policy,
                category_name,
                category,
                channel,
                case.account_id,
                self.now,
                lambda: self.facts(case),
            )
            if block is None:
                return _Sent(found, first)
            if deadline is not None and (block.until is None or block.until > deadline):
                first, first_channel = first or block, first_channel or channel
                late = late or block
                continue
            if step.on_blocked == "fallback":
                first, first_channel = first or block, first_channel or channel
                guard_hit = guard_hit or _Deferred(block, channel)
                continue
            if step.on_blocked == "skip":
                return Blocked(channel, block.reason, block.detail + "; the step skips")
            return _Deferred(block, channel)
        if guard_hit is not None:
            return guard_hit
        if late is not None:
            said = f"no channel the guards allow before the deadline ({late.detail})"
            return Blocked(first_channel, "deadline", said)
        if isinstance(first, Blocked):
            return first
        if not channels:
            return Blocked(None, "no_channel", "no preferred channel and no fallback")
        return Blocked(first_channel, "no_channel", "every channel of this step was tried")

    def send(
        self, case: Case, category_name: str, send: Send, index: int, group: int, sent: _Sent
    ) -> None:
        target = sent.target
        locale = self.locale()
        nid = notification_id(
            self.state.customer_id, case.case_id, index, target.channel, target.recipient
        )
        fallback = sent.fallback_from
        self.record(
            "sent",
            "fallback" if fallback is not None else "step_due",
            case,
            step=index,
            channel=target.channel,
            template=send.template,
            recipient=target.recipient,
            notification_id=nid,
            detail=fallback.detail if fallback is not None else None,
            extra={"locale": locale, "category": category_name},
        )
        self.notifications.append(
            unchecked(
                NotificationRequest,
                {
                    "notification_id": nid,
                    "customer_id": self.state.customer_id,
                    "account_id": case.account_id,
                    "case_id": case.case_id,
                    "escalation": case.escalation,
                    "ladder": case.ladder,
                    "step": index,
                    "category": category_name,
                    "channel": target.channel,
                    "recipient": target.recipient,
                    "template": send.template,
                    "locale": locale,
                    "requested_at": self.now,
                    "policy_version": self.rules(case).version,
                    "cause_event_id": self.cause or case.cause_event_id,
                    "priority": self.priority(case),
                    "context": {
                        "data": case.data,
                        "account_id": case.account_id,
                        "customer": {"name": self.state.profile.name, "locale": locale},
                    },
                },
            )
        )
        self.contacts.append(
            Contact(
                at=self.now,
                channel=target.channel,
                category=category_name,
                account_id=case.account_id,
            )
        )
        current = self.edit(case.case_id)
        current.steps_sent += 1
        current.sent = {**current.sent, nid: SentRef(index, group, target.channel)}

    # -- facts --------------------------------------------------------------------

    def locale(self) -> str:
        """The customer's chosen language, else their profile's, else the set's default."""
        chosen = self.state.preferences.locale or self.state.profile.locale
        return chosen or self.policy.default_locale

    def priority(self, case: Case) -> Priority:
        """The escalation's priority, else its category's."""
        esc = self.escalation(case)
        assert esc is not None
        return esc.priority or self.category(case, esc.category).priority

    def ceased(self, account_id: str | None, channel: Channel | None) -> bool:
        """A cease covers this account (or all) and this channel (or every channel)."""
        return any(
            (c.account_id is None or c.account_id == account_id)
            and (c.channel is None or c.channel == channel)
            for c in self.state.ceases
        )

    @staticmethod
    def previous_contact(case: Case) -> Target | None:
        """The contact point a `contact.changed` replaced: it is told too."""
        previous, changed = case.data.get("previous"), case.data.get("field")
        if not isinstance(previous, str) or changed not in ("email", "phone"):
            return None
        return Target("email" if changed == "email" else "sms", previous)

    def facts(self, case: Case) -> Mapping[str, Any]:
        return _Facts(self.state, case)


class _Facts(Mapping[str, Any]):
    """What conditions read (`data.`, `customer.`, `case.`), each root built on first use."""

    __slots__ = ("_built", "_case", "_state")

    def __init__(self, state: CustomerState, case: Case) -> None:
        self._state, self._case = state, case
        self._built: dict[str, Any] = {}

    def __getitem__(self, root: str) -> Any:
        if root not in self._built:
            self._built[root] = self._build(root)
        return self._built[root]

    def __iter__(self) -> Iterator[str]:
        return iter(("data", "customer", "case"))

    def __len__(self) -> int:
        return 3

    def _build(self, root: str) -> Any:
        state, case = self._state, self._case
        if root == "data":
            return case.data
        if root == "customer":
            return {
                **state.profile.model_dump(mode="json"),
                **state.preferences.model_dump(mode="json", exclude_none=True),
                "email": state.profile.emails[0].address if state.profile.emails else None,
                "phone": state.profile.phones[0].number if state.profile.phones else None,
            }
        if root == "case":
            return {
                "steps_sent": case.steps_sent,
                "ladder": case.ladder,
                "escalation": case.escalation,
                "account_id": case.account_id,
                "paused": case.paused_at is not None,
                "received": list(case.received),
            }
        raise KeyError(root)


def _quoted(text: str) -> str:
    """A customer's words on a ledger row: the first 160 characters."""
    return text if len(text) <= 160 else text[:159] + "…"


def _concerns(case: Case, event: Event) -> bool:
    """An event on the case's account, a customer-wide event, or any event for a customer case."""
    return event.account_id is None or case.account_id in (None, event.account_id)


def _ladder(esc: Escalation, name: str) -> Ladder | None:
    return next((lad for lad in esc.ladders if lad.name == name), None)


def _openable(esc: Escalation) -> list[Ladder]:
    """Ladders opening may choose: up to and including the first without `when`."""
    chosen: list[Ladder] = []
    for ladder in esc.ladders:
        chosen.append(ladder)
        if ladder.when is None:
            break
    return chosen


@dataclass(frozen=True, slots=True)
class _PolicyIndex:
    triggers: dict[str, list[tuple[str, Escalation]]]
    """Escalations by the event type that opens them."""
    moves: dict[str, frozenset[str]]
    """Per escalation, the event types that do something to an open case."""
    awaited: dict[str, frozenset[str]]
    """Per escalation, the event types a step's `unless_received` asks about."""
    lookback: timedelta
    """How long the contact ledger must keep a send for the caps."""
    holidays: frozenset[date]


_INDEXES: dict[str, _PolicyIndex] = {}


def _index(policy: PolicySet) -> _PolicyIndex:
    """Look-ups built once per policy version (a version is its content)."""
    found = _INDEXES.get(policy.version)
    if found is not None:
        return found
    triggers: dict[str, list[tuple[str, Escalation]]] = {}
    moves: dict[str, frozenset[str]] = {}
    awaited: dict[str, frozenset[str]] = {}
    alternatives = policy.alternatives()
    for name, esc in policy.escalations.items():
        if name not in alternatives:  # an arm's escalation opens only through its arm
            triggers.setdefault(esc.trigger, []).append((name, esc))
        waits = frozenset(t for lad in esc.ladders for st in lad.steps for t in st.unless_received)
        awaited[name] = waits
        moves[name] = waits | {*esc.stop_on, *esc.pause_on, *esc.pause_on.values(), *esc.switch_on}
    found = _INDEXES[policy.version] = _PolicyIndex(
        triggers, moves, awaited, lookback(policy), frozenset(policy.holidays)
    )
    return found
