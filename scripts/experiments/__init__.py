"""Studies that chose the recipe (the architecture sweep, the contextual recipe over seeds); run as `python -m
scripts.experiments.NAME` from the repository root."""
