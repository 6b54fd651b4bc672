"""Serving a trained model over HTTP (python -m skinclf.serve): LitServe's server, the model behind it, the page."""
