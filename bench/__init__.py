"""signdb benchmarks: ``python -m bench`` (``make bench``) runs every ``bench_*.py`` module.

Not tests: they measure, print a table and write ``bench/results/<name>.json``.
"""
