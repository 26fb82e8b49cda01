"""Webhooks: a user's HTTPS endpoints told about changes, signed as Standard Webhooks."""
