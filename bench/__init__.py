"""Benchmark of the exporter at 1,000 to 100,000 numbers per subaccount: `python -m bench`."""
