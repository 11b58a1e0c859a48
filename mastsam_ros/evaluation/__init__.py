"""Evaluation on DAVIS: metrics and the unsupervised protocol, baselines, and a ground-truth oracle segmenter.

Never imported by the core or the node: the oracle reads ground truth, so it must not be selectable at run time.
"""
