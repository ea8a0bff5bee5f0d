"""What every worker process runs on: settings, logging, metrics, broker credentials,
the garbage collector's watch and the clock."""
