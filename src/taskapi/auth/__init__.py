"""Accounts: registration, email verification, sign-in with lockout, refresh-token families,
passwords, and the dependencies that give every route its caller."""
