"""Generation, judging, preprocessing, training and evaluation. No Streamlit imports here."""
