"""The worker's HTTP surface: provider webhooks, the preferences API, the preference page.

Every view turns what it was told into an event on a topic keyed by customer
(or, for an SMS reply, by phone number until it is resolved); none writes state.
"""
