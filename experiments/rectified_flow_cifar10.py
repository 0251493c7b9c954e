"""Rectified flow on CIFAR-10: Liu et al. (2023), "Flow Straight and Fast", Table 1.

The 1-rectified flow: the linear path ``x_t = (1 - t) x_data + t x_source`` (``sigma_min =
0``; convention: data at t = 0, Gaussian source at t = 1; the paper's ``X_t = t X_1 + (1 -
t) X_0`` with ``t' = 1 - t``) with the DDPM++ U-Net of Song et al.
(:func:`jaxgen.nets.unet.ddpmpp_config`), sampled with the adaptive RK45-type solver
(Tsit5 here, rtol = atol = 1e-5; the paper reports 127 evaluations). Reflow and distillation
follow the digits recipes: set ``model.teacher_workdir`` to this run, ``model.coupling =
paired`` (2-rectified flow), then ``model.objective = distill`` on the 2-rectified flow with
``model.sampler = euler model.sample_steps = 1`` (the paper's 2-RF + distill one step).

Needs CIFAR-10 prepared by tensorflow_datasets under data.data_dir.

    jaxgen train experiments/rectified_flow_cifar10.py --workdir runs/rf_cifar10 \
        data.data_dir=~/tensorflow_datasets
    jaxgen eval --workdir runs/rf_cifar10

Paper result: 1-rectified flow FID 2.58 with the adaptive solver; 2-rectified flow distilled
to one step FID 4.85 (Liu et al. 2023, Table 1). Expected here: to be measured (no FID in
this repository yet).
"""

from jaxgen.config import DataConfig, EvalConfig, ExperimentConfig, OptimConfig, TrainConfig
from jaxgen.nets.unet import ddpmpp_config
from jaxgen.recipes.flow_matching import FlowMatchingConfig


def get_config() -> ExperimentConfig:
    return ExperimentConfig(
        family="flow_matching",
        name="rectified_flow_cifar10",
        model=FlowMatchingConfig(
            unet=ddpmpp_config(),
            path="linear",
            sigma_min=0.0,
            time_sampler="uniform",
            parameterization="velocity",
            coupling="independent",
            sampler="adaptive",
            adaptive_rtol=1e-5,
            adaptive_atol=1e-5,
        ),
        data=DataConfig(name="cifar10", batch_size=128, random_flip=True),
        optim=OptimConfig(
            learning_rate=2e-4,
            warmup_steps=5000,
            decay="constant",
            grad_clip_norm=1.0,
            ema_decay=0.999999,
        ),
        train=TrainConfig(
            num_steps=800_000,
            log_every=100,
            checkpoint_every=10_000,
            sample_every=50_000,
            num_grid_samples=64,
        ),
        eval=EvalConfig(split="test", num_samples=50_000, batch_size=500),
        expected=(
            "paper: 1-RF FID 2.58 (adaptive solver), 2-RF + distill one step FID 4.85 (Liu et "
            "al. 2023, Table 1); here: to be measured"
        ),
    )
