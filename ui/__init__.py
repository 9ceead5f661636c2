"""Streamlit-side helpers shared by the pages: state, dataset, sidebar frame, charts, training."""
