"""One-off measurements, each run as `python -m bench.studies.<name>`: see README.md beside this file."""
