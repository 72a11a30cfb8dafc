"""Dashboard side of babysit: plotly figures and the downsampler that feeds them.

The modules here build figures as plain functions (``run_figure(metrics, events,
checkpoints) -> go.Figure``) so they can be tested without a browser. Nothing in this
package's ``__init__`` imports Streamlit: ``import babysit.ui`` works with only numpy,
pandas and plotly installed.

>>> import babysit.ui
"""
