"""srt-local: Selective Reflection-Tuning on your own machine.

The engine. Importing it loads no model, opens no store and imports neither Textual nor llama.cpp.
"""

__version__ = "0.1.0"
