"""The studio: generate, review, store, train and compare aligned models from the browser."""

__version__ = "0.1.0"
