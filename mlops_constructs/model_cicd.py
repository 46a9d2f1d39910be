"""Model CI/CD, kept for existing imports: the constructs live in :mod:`mlops_constructs.cicd`."""

from mlops_constructs.cicd import *  # noqa: F401,F403
from mlops_constructs.cicd import __all__  # noqa: F401
