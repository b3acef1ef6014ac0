"""Analyses of fitted models: fixed points, geometry, dynamics diagnostics."""
