"""Benchmarks that print one table of ratios and counts, each measured side by side in the same run."""
