"""The `clarion` command: one module a subcommand, and the timeline it prints for people."""
