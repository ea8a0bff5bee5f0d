"""Policy versions: what a set must pass, how it is published on the `policies` topic, and
how every worker follows the topic and puts each version in force at its instant."""
