"""Analyses of fitted models: fixed points, geometry, dynamics diagnostics.

Modules
-------
fitdir              the one reader of a fit folder (:func:`~cortexfit.analysis.fitdir.read_fit_dir`), used by
                    every analysis and by the report; :func:`~cortexfit.analysis.fitdir.model_trajectories`
jacobians           frozen copies and batched Jacobians of a :class:`~cortexfit.models.base.Dynamics`
fixed_point_solver  the batched fixed/slow-point search (Adam, Levenberg-Marquardt, merging, labels)
fixed_points        ``cortexfit fixed-points``: starts from the trajectories, the solver, the ``fixed_points`` file
dynamics            ``cortexfit dynamics``: spectra, Lyapunov exponents, echo-state and gradient tests
geometry            ``cortexfit geometry``: PCA, jPCA and model-data alignment of one fit
jpca, similarity    jPCA and the similarity measures (CCA, Procrustes, DSA) geometry uses
"""
