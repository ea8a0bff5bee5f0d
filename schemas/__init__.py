"""The contracts: what producers send, what Clarion decides, what the ledger keeps.

Every other package depends on this one and it depends on nothing of Clarion's.
"""
