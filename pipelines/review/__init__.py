"""Human review in Argilla: dataset settings, push, pull, reconcile and agreement (no Streamlit)."""
