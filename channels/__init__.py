"""Provider adapters behind one small interface: render a request, send it, classify the result.

Imports `schemas` only: never `streams` (no Kafka here) nor `policies`.
"""
