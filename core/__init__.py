"""The bottom layer: errors, settings, secrets, paths, process helpers, progress events, spec loading.

Every other package imports it; it imports none of them (tests/test_layers.py checks).
"""
