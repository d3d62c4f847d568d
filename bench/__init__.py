"""Benchmarks. ``python -m bench`` runs every ``bench/<name>.py`` module's ``main()``;
``python -m bench NAME...`` runs only those. Results are written to ``bench/results/``."""
