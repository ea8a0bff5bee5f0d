"""The intake agent and what it keeps per customer: the working set, the stored state,
recent event ids, and the timers that fall due."""
