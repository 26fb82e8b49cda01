"""Helpers the tests share: factories, checks, clients and the plugin for process fixtures.

Fixtures live in conftest.py files (and `processes`, a pytest plugin); everything they and
the tests call lives here, so a test imports it from one place.
"""
