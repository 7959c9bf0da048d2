"""Benchmarks, run by `make bench` (`python -m bench [NAME ...]`).

Each `bench_<name>.py` module has a `main()` that seeds its own data in a
throw-away database, measures, and prints its figures. They are kept out of
the test suite: they take minutes and measure the machine, not correctness.
"""
