"""Inference runtime of the model-in-Lambda / endpoint-proxy function.

The Lambda entry point is ``app.handler`` (``lambda_src/inference/app.py``); everything it needs lives in this package
so that tests and benchmarks can import it under a name that cannot clash with other functions' ``app`` modules.
"""

import os

# numpy's bundled OpenBLAS starts one thread per CPU when it loads; nothing here uses BLAS (XGBoost has its own
# threads, set by MODEL_NTHREAD), so one thread trims the cold start. Must happen before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
