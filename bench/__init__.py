"""The benchmark harness (`python -m bench.run`, `make bench`) and its peers; one-off studies in studies/."""
