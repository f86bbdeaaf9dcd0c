"""Does the selection help? A judge model compares kept samples with their originals (or a
random control) in both orders; the figures say by how much, with intervals.

prompt.py: the judge's prompt files, schema and parser; records.py: what is compared and how it
is stored; runner.py: `srt judge`; stats.py: win rates, intervals, length control (pure);
results.py: stored judgements as figures; overrides.py: verdicts as review overrides.
"""
