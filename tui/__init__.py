"""The terminal UI of srt-local: a Textual app that drives the same engine as the CLI.

Nothing in srt_local imports this package; it imports srt_local.
"""
