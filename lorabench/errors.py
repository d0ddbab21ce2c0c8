"""Errors the user can fix. run.py prints them as one clear message (no stack trace) and exits 2."""


class LorabenchError(Exception):
    """Base class: the message says what to change."""


class ConfigError(LorabenchError):
    """An invalid or unsupported configuration, caught before any model loads."""


class OfflineError(LorabenchError):
    """A hub resource was needed but the hub is unreachable; the message names the offline alternative."""
