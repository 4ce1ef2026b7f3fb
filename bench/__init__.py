"""mmsgate benchmarks: ``python -m bench.run [--quick] [--out PATH]`` (see bench/README.md)."""
