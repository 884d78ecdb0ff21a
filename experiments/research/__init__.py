"""The research side of ``experiments``: benchmarks (``bench``), evaluations (``evaluation``),
model training (``training``) and the readers of the bundled development data (``datasets``).

The product side (the run, its report and the review app) lives beside it in ``experiments``
and never imports from here; the tasks here import the product freely.
"""
