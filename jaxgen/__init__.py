"""jaxgen: generative models as pure, composable JAX functions.

Layout:
  jaxgen.diffusion      DDPM math: schedules, forward process, losses, variational bound, samplers.
  jaxgen.distributions  Closed-form reference distributions (Gaussian mixtures) used as oracles.
  jaxgen.nets           Flax NNX networks (U-Net, classifiers).
  jaxgen.data           Built-in and TFDS datasets, deterministic sharded batching.
  jaxgen.engine         The one training engine: state, optimizer, EMA, sharded step, checkpoints.
  jaxgen.recipes        Glue from a model family's math to its networks and the engine.
  jaxgen.evaluation     Sample-quality and two-sample metrics.
"""

__version__ = "0.1.0"
