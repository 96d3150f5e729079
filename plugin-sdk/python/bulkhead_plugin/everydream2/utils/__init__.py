"""EveryDream2's ``utils`` package, as far as its plugins import it (a plugin's own utils wins)."""
