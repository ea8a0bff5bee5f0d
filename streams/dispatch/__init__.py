"""The dispatch agent: notification requests to providers, retries, delivery bookkeeping,
and the SMS replies that find their customer."""
