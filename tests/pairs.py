"""Six small alpaca records shared by the tests that drive whole runs (one has an input)."""

from __future__ import annotations

SIX_PAIRS: list[dict[str, str]] = [
    {"instruction": "List three primary colours.", "input": "", "output": "Red, blue, yellow."},
    {"instruction": "What is 12 times 12?", "input": "", "output": "144."},
    {
        "instruction": "Summarise the text.",
        "input": "Cats sleep a lot and hunt at dusk.",
        "output": "Cats nap by day and hunt at dusk.",
    },
    {"instruction": "Suggest a name for a bakery.", "input": "", "output": "Rise & Shine."},
    {
        "instruction": "Why is the sky blue?",
        "input": "",
        "output": "Air scatters blue light more than red light.",
    },
    {
        "instruction": "Write a haiku about rain.",
        "input": "",
        "output": "Soft rain on the roof / the garden drinks in silence / puddles hold the sky",
    },
]
