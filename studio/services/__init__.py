"""Services: typed verb functions shared by the pages and the CLI (no Streamlit imports)."""
