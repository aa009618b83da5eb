"""Compare: pick models and a prompt set, read answers side by side, vote in the arena, see the leaderboard.

Four tabs: New comparison (pickers; the outputs are generated in a background job), Side by side
(one prompt or a table, word diff, lengths, reward scores, filters), Arena (anonymous pairs, A / B /
tie / both bad with keyboard shortcuts, names revealed after the vote) and Leaderboard (Bradley–Terry
ratings and win rates with 95% intervals, slices, judge checks).
"""

from __future__ import annotations

import streamlit as st

from pages._compare_arena import arena_tab
from pages._compare_board import board_tab
from pages._compare_new import new_tab
from pages._compare_view import view_tab
from pages._ui import read_only_notice, render_tabs, show_error, show_flashes, watch_jobs
from core.errors import StudioError
from studio.services import compare as compare_svc

LIVE_REFRESH_S = 2.0
TABS = {"New comparison": new_tab, "Side by side": view_tab, "Arena": arena_tab, "Leaderboard": board_tab}

st.title("Compare")
st.caption("Answers of two or more models side by side, votes from people and judges, and a leaderboard with "
           "confidence intervals. Every finished training run is compared with its base here too.")
read_only_notice("starting a comparison or a judge (voting in the Arena is yours)")
show_flashes()
try:
    watch_jobs(compare_svc.JOB_KIND, LIVE_REFRESH_S)
except StudioError as err:
    show_error(err)
render_tabs(TABS)
