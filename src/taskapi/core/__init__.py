"""The ground floor every feature builds on (settings, database, errors, security, caching,
rate limiting, metrics, logging). It imports no feature."""
