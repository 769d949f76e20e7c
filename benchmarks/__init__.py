"""Side-by-side benchmarks: each writes JSON under reports/bench/ (see the Makefile's bench targets)."""
