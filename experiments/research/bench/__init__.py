"""Benchmarks (``make bench``) and the naive prior-art baselines they compare against.

The baselines here are faithful re-implementations of the prior art's loops, kept
only as measuring sticks; nothing outside ``experiments.research.bench`` may import them.
"""
