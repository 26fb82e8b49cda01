"""taskapi: a task management REST API (FastAPI, SQLAlchemy async, SQLite or PostgreSQL).

Layers, lowest first: core, auth, categories, tasks, then the app glue (app, cli, health,
models); a layer imports only those below it (the import-linter contract in pyproject.toml).
"""
