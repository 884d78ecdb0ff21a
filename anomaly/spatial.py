"""Spatial anomaly score (weighted k-th nearest neighbour). PLACEHOLDER: being written (issue 3)."""
