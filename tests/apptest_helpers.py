"""Reading what an AppTest-rendered page shows, shared by the page tests."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def texts(at: AppTest) -> str:
    """Everything the page wrote as markdown, captions, info boxes and alerts, as one string."""
    groups = (at.markdown, at.caption, at.info, at.success, at.warning, at.error, at.title, at.subheader)
    return "\n".join(str(element.value) for group in groups for element in group)


def widget(elements, label: str):
    """The one widget with this label (fails listing the labels there are)."""
    matches = [w for w in elements if w.label == label]
    assert matches, f"no widget labelled {label!r}; have {[w.label for w in elements]}"
    return matches[0]


def rerun(at: AppTest) -> AppTest:
    """Run the script again and fail on any exception it raised."""
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_with_tab(page, tab: str, timeout_s: float = 60) -> AppTest:
    """A page with ``tab`` open (tabs are bound to ``?tab=``; only the open one renders)."""
    at = AppTest.from_file(str(page), default_timeout=timeout_s)
    at.query_params["tab"] = tab
    return rerun(at)
