"""Comparing models: prompt sets, cached outputs, judges, statistics, metrics and the leakage guard."""
