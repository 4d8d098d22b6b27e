"""Measurements behind the README's figures (speed, memory, deploy size and quality); run as `python -m
scripts.measure.NAME` from the repository root."""
