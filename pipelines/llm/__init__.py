"""LLM backends: one interface (``base.LLMBackend``), one small module per backend."""

from pipelines.llm.base import Generation, LLMBackend, Messages, SamplingParams

__all__ = ["Generation", "LLMBackend", "Messages", "SamplingParams"]
