"""The Streamlit dashboard over the results store (`harness dashboard`). It only reads the store and
never imports strategies or torch: looking at results must not load a model."""
