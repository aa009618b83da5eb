"""The studio's Streamlit entry file and its only router.

``streamlit run studio/app.py`` (or ``python -m studio up``) runs this file on every rerun: it sets
the page config and hands over to the selected page with one ``st.navigation``. Adding a page is
one line in ``SECTIONS``: (file under ``pages/``, title, Material icon).

Team mode (``STUDIO_AUTH=argilla``): nobody gets past the sign-in page without an Argilla account, and
the page runs as the signed-in person (``access.act_as``), so every service call checks their role.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `streamlit run` puts studio/ on sys.path, not the repo root
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402

PAGES_DIR = REPO_ROOT / "pages"
SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Studio": [
        ("home.py", "Home", ":material/home:"),
        ("models.py", "Models", ":material/neurology:"),
        ("generate.py", "Generate", ":material/auto_awesome:"),
        ("review.py", "Review", ":material/rate_review:"),
        ("train.py", "Train", ":material/model_training:"),
        ("compare.py", "Compare", ":material/compare:"),
    ],
}
ADMIN_SECTIONS: dict[str, list[tuple[str, str, str]]] = {
    "Team": [("audit.py", "Audit log", ":material/policy:")],
}


def build_pages(admin: bool = True) -> dict[str, list[st.Page]]:
    """The navigation: one ``st.Page`` per entry of ``SECTIONS`` (and ``ADMIN_SECTIONS`` for an admin);
    the first page is the default."""
    first = True
    pages: dict[str, list[st.Page]] = {}
    for section, entries in {**SECTIONS, **(ADMIN_SECTIONS if admin else {})}.items():
        pages[section] = []
        for file_name, title, icon in entries:
            pages[section].append(st.Page(PAGES_DIR / file_name, title=title, icon=icon, default=first))
            first = False
    return pages


st.set_page_config(page_title="the studio", page_icon=":material/science:", layout="wide")

from pages._signin import account_box, sign_in_page, signed_in  # noqa: E402
from studio import access  # noqa: E402

if access.team_mode():
    actor = signed_in()
    if actor is None:
        st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:")]).run()
    else:
        account_box(actor)
        with access.act_as(actor):
            st.navigation(build_pages(admin=actor.can("admin"))).run()
else:
    st.navigation(build_pages()).run()
