"""Autoregressive models' maths as pure JAX functions (no Flax): the token cross-entropy
with its shift convention, logit filtering (temperature, top-k, top-p), jitted sampling
loops for sequences (with a per-token step function, such as a transformer's key-value
cache or an RNN's state) and for images (PixelCNN's one pass per value), and the causal
convolution masks of PixelCNN. The losses, :func:`token_cross_entropy` for sequences and
:func:`image_nll` for images (PixelCNN's ``-log p(x)`` with ``bits_per_dim``), return
``(per_example, terms)``; every sampler takes its size as ``shape`` right after ``key``,
draws example ``b``'s values from that example's key alone, and returns
``jaxgen.core.SamplerOutput`` with one network evaluation per token / position (``nfe``).

The networks (PixelCNN, gated PixelCNN, the causal dilated convolution net, LSTM/GRU
language models, the causal transformer with its cache) are Flax NNX modules in
``jaxgen.nets``.
"""

from jaxgen.autoregressive import image_sampling, losses, masks, prefix, sampling
from jaxgen.autoregressive.image_sampling import sample_image
from jaxgen.autoregressive.losses import (
    bits_per_token,
    check_tokens,
    image_log_prob,
    image_nll,
    shift_right,
    token_cross_entropy,
)
from jaxgen.autoregressive.masks import MASK_TYPES, causal_conv_mask
from jaxgen.autoregressive.prefix import (
    guided_step_fn,
    logit_guidance,
    prefix_sequence_nll,
    sample_with_prefix,
    sample_with_prefix_uncached,
)
from jaxgen.autoregressive.sampling import (
    filter_logits,
    sample_sequence,
    sample_sequence_uncached,
)

__all__ = [
    "MASK_TYPES",
    "bits_per_token",
    "causal_conv_mask",
    "check_tokens",
    "filter_logits",
    "guided_step_fn",
    "image_log_prob",
    "image_nll",
    "image_sampling",
    "logit_guidance",
    "losses",
    "masks",
    "prefix",
    "prefix_sequence_nll",
    "sample_image",
    "sample_sequence",
    "sample_sequence_uncached",
    "sample_with_prefix",
    "sample_with_prefix_uncached",
    "sampling",
    "shift_right",
    "token_cross_entropy",
]
