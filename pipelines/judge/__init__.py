"""Judges: LLM judges (pointwise, pairwise, listwise; JSON or compact replies), their prompts and
parsers, and programmatic rubrics. Generation labels pairs with them, comparison votes with them,
and online training rewards with them.

Adding a rubric is one function with ``@register_rubric("name", params=...)`` in ``rubrics.py`` (or
a plug-in module named ``"package.module:function"``).
"""
