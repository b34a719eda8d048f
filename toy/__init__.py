"""The toy worlds a laptop runs: the shapes world (a tiny text-to-video model and its exact reward) and
the 2D Gaussian mixture of Fig. 2. Importing the package sets torch's CPU thread policy first
(infra/__init__.py), as the `models` package does, for a notebook that imports toy.gmm_model alone."""
import infra  # noqa: F401
