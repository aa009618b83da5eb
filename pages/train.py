"""Train: freeze reviewed data into a snapshot, pick a base model and a recipe, launch, watch.

Three tabs: Data (snapshot filters, pre-training checks, create), New run (recipe, preset and the
hyperparameter form with help text from the spec; effective batch, steps, time estimate; launch;
the accelerate export) and Runs (the queue, live curves, lineage, logs, cancel/resume). Runs train
in their own processes, so a page reload changes nothing.
"""

from __future__ import annotations

import streamlit as st

from pages._train_data import data_tab
from pages._train_form import new_run_tab
from pages._train_runs import runs_tab
from pages._ui import read_only_notice, render_tabs, show_flashes

TABS = {"Data": data_tab, "New run": new_run_tab, "Runs": runs_tab}

st.title("Train")
st.caption("SFT, reward model + PPO, DPO, ORPO, CPO, KTO, GRPO and RLOO on an immutable snapshot of your pairs, "
           "with live curves and lineage back to the records.")
read_only_notice("creating snapshots and starting, cancelling or resuming runs")
show_flashes()
render_tabs(TABS)
