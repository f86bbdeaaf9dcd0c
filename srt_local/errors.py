"""The one root of every error srt-local reports to a user as a single line."""


class SrtError(Exception):
    """An error with a message fit for the user: what went wrong, where, and what to do."""
