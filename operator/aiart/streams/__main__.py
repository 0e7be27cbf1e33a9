"""``python -m aiart.streams``: a stream's bridge (bridge.py)."""

from aiart.streams.bridge import main

main()
