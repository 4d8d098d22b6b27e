"""The repository's scripts. What users run stays at this level (main.sh, test.sh, setup.sh, train.py, configs/,
examples.txt); measure/ holds the measurements behind the README's figures and experiments/ the studies that chose
the recipe. Both are modules of this package, run from the repository root as `python -m scripts.measure.benchmark`,
so that they share `scripts.common` by a plain import."""
