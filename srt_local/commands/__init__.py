"""Subcommands of `srt`: thin drivers of the engine's modules."""
