"""The noise-aware digit classifier ``p_phi(c | x_t, t)`` of classifier guidance (Dhariwal
and Nichol 2021) for the DDPM digits models.

A small U-Net encoder (the down path and middle block of experiments/ddpm_digits.py's
U-Net, then GroupNorm, SiLU, average pooling and a dense layer) trained with the cross-
entropy of the digit label on digits noised by the DDPM forward process of
experiments/ddpm_digits.py (linear betas 1e-4..0.02, T = 1000) at uniform ``t``.

Run (2 CPU cores, a few minutes), then guide the unconditional DDPM with it:

    jaxgen train experiments/noisy_classifier_digits.py --workdir runs/noisy_classifier_digits
    jaxgen eval --workdir runs/noisy_classifier_digits
    jaxgen sample --workdir runs/ddpm_digits --classifier runs/noisy_classifier_digits \
        --class 3 --guidance-scale 1

Expected result (an estimate, to be measured): held-out accuracy > 95% on clean digits
(``accuracy_t0``), falling towards chance (10%) as ``t`` approaches T; classifier-guided
DDPM samples recognised by the digit classifier well above chance for every class.
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import UNetConfig
from jaxgen.recipes.noisy_classifier import NoisyClassifierConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="noisy_classifier",
        name="noisy_classifier_digits",
        model=NoisyClassifierConfig(
            unet=UNetConfig(
                channels=32,
                channel_mult=(1, 2),
                num_res_blocks=1,
                attention_resolutions=(4,),
                dropout=0.0,
                num_groups=8,
                num_heads=1,
            ),
            process="ddpm",
            schedule="linear",
            num_timesteps=1000,
            beta_start=1e-4,
            beta_end=0.02,
            eval_levels=(0.0, 0.1, 0.25, 0.5, 0.75),
        ),
        data=DataConfig(name="digits", batch_size=128),
        optim=OptimConfig(
            learning_rate=1e-3,
            warmup_steps=100,
            decay="cosine",
            grad_clip_norm=1.0,
            ema_decay=0.999,
        ),
        train=TrainConfig(
            num_steps=1500,
            log_every=100,
            checkpoint_every=500,
            sample_every=0,
        ),
        eval=EvalConfig(split="test", batch_size=360),
        expected="held-out accuracy > 95% on clean digits (accuracy_t0), expected",
    )
