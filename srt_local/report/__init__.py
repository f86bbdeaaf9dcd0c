"""`srt report`: a run's figures gathered once (figures.py), drawn as SVG (svg.py) into one
self-contained HTML file (html.py); the TUI's Report tab draws the same figures in the terminal."""
