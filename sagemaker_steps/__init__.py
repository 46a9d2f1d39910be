"""SageMaker Pipeline step scripts (preprocess, train, evaluate), their wiring and a local runner.

Each step script is standalone (imports nothing from this package) because SageMaker uploads it alone:
- ``preprocess.py``: scikit-learn processing container.
- ``train.py``: XGBoost framework container (script mode) or scikit-learn container (``--framework sklearn``);
  staged with ``serve.py``, which it copies into the model dir as ``code/serve.py``.
- ``serve.py``: the inference handlers (``model_fn`` ... ``output_fn``) the serving container imports from
  ``model.tar.gz`` (``SAGEMAKER_PROGRAM=serve.py``).
- ``evaluate.py``: XGBoost processing container (scikit-learn processing container for sklearn models).

``pipeline_spec.py`` is the single source of truth for step order, containers, channels, the PropertyFile and
the registration condition; ``local_runner.py`` executes the steps in that order as plain subprocesses.
"""
