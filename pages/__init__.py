"""The studio's Streamlit pages. ``studio/app.py`` is the only router; each file here is one page,
run by ``st.navigation`` as a script. Shared rendering helpers live in ``pages/_ui.py``."""
