"""Which arm of an experiment a customer is in: a hash, so every worker and every replay
agrees, and a customer stays in one arm across cases, restarts and versions."""

from __future__ import annotations

import hashlib

from policies.model import HOLDOUT, Experiment


def assign(experiment: Experiment, customer_id: str) -> str:
    """The arm's name (`holdout` for the hold-out arm), in proportion to the weights."""
    digest = hashlib.sha256(f"{experiment.name}\0{customer_id}".encode()).digest()
    total = sum(arm.weight for arm in experiment.arms) + experiment.holdout
    mark = int.from_bytes(digest[:8], "big") / 2**64 * total
    for arm in experiment.arms:
        if mark < arm.weight:
            return arm.name
        mark -= arm.weight
    return HOLDOUT if experiment.holdout > 0 else experiment.arms[-1].name
