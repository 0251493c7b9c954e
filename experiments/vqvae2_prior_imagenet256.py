"""VQ-VAE-2's class-conditional hierarchical priors on ImageNet 256x256 (Razavi et al. 2019):
an autoregressive prior over the 32x32 top codes and one over the 64x64 bottom codes given
the top, of ``experiments/vqvae2_imagenet256.py`` (trained first by this config), both
conditioned on the class.

Paper results (class-conditional ImageNet 256x256): samples with FID of about 31 against the
validation set without rejection sampling, falling to about 10 with classifier-based
rejection sampling that trades diversity for quality (its Figure 6, precision / recall and
FID / Inception score curves); the two priors' negative log-likelihoods on the codes are in
its Table 1.

What is ours, not the paper's: each prior is a causal transformer over
``[class token; coarser codes; codes]`` (:mod:`jaxgen.recipes.code_prior`), where the paper
uses a gated PixelCNN with multi-head self-attention for the top codes and a conditional
PixelCNN with the top codes as a spatial condition for the bottom (the bottom sequence here
is 1 + 1024 + 4096 tokens: plan memory accordingly, or shard the batch over devices), the
class dropout (10%, so classifier-free guidance on the logits works; the paper has none)
and its sizes. jaxgen computes no ImageNet FID: ``jaxgen sample`` writes the samples.

    jaxgen train experiments/vqvae2_prior_imagenet256.py \\
        --workdir runs/vqvae2_prior_imagenet256 data.data_dir=~/tensorflow_datasets
    jaxgen sample --workdir runs/vqvae2_prior_imagenet256 --num-samples 50000
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.recipes.code_prior import CodePriorConfig
from jaxgen.recipes.first_stage import FirstStageConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="code_prior",
        name="vqvae2_prior_imagenet256",
        model=CodePriorConfig(
            first_stage=FirstStageConfig(
                workdir="runs/vqvae2_imagenet256", config="experiments/vqvae2_imagenet256.py"
            ),
            condition="label",
            p_uncond=0.1,
            dim=1024,
            num_layers=24,
            num_heads=16,
            mlp_ratio=4,
            eval_samples=0,
        ),
        data=DataConfig(name="imagenet2012_256", batch_size=256),
        optim=OptimConfig(learning_rate=3e-4, warmup_steps=5000, decay="cosine", ema_decay=0.9999),
        train=TrainConfig(
            num_steps=1_000_000, log_every=200, checkpoint_every=5000, sample_every=20_000
        ),
        eval=EvalConfig(split="validation[:1000]", num_samples=64, batch_size=16),
        expected="paper: FID ~31 without rejection sampling, ~10 with it (class-conditional)",
    )
