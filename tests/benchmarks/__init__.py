"""Benchmarks, run by hand (``make bench`` or ``python -m tests.benchmarks``), never collected by pytest.

Each module measures one thing against its plain baseline on data it makes itself (:mod:`.corpus`); see
:mod:`.__main__` for the table the suite prints and the JSON it writes.
"""
