"""Model files: pulling the embedded default model and checking user-supplied models.

No Streamlit and no database here: ``studio.services.models`` registers what these functions
produce, so the CLI, the pages and tests share one path from bytes on disk to a registry row.
"""
