"""Composition root: commands that put components together (the offline report; later the demo and launchers)."""
