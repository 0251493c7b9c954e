"""A two-stage cascaded diffusion model for class-conditional ImageNet 64x64 (Ho et al.
2022, "Cascaded Diffusion Models for High Fidelity Image Generation", JMLR): the
class-conditional 32x32 DDPM of ``experiments/cdm_imagenet64_base.py`` followed by the
class-conditional 32 -> 64 super-resolution DDPM of ``experiments/cdm_imagenet64_sr.py``,
each trained separately on real (area-downsampled) ImageNet from TFDS
``imagenet_resized/64x64``, the base stage's samples noised at sampling by Gaussian
conditioning augmentation (level 0.2 of the trained range [0, 0.5]). Every stage gets the
same class labels (classes cycle 0..999 over the samples) and guidance scale 1: the
conditional model, unguided.

Paper results (class-conditional ImageNet, without an auxiliary classifier): FID 1.48 at
64x64 (the resolution of this cascade), 3.52 at 128x128 and 4.88 at 256x256;
classification accuracy score 63.02% top-1 and 84.06% top-5 at 256x256. The paper found
the cascade's quality relies crucially on conditioning augmentation (Gaussian noise for
the low-resolution stages, Gaussian blur for the stage to 256x256; truncated and
non-truncated forms, jaxgen has the non-truncated one; see
``experiments/cdm_imagenet64_sr.py``). The networks, schedules, training lengths and the
sampling settings here (ancestral sampling with 1000 steps for the base stage, DDIM with
100 steps and level 0.2 for the super-resolution stage) are ours, not the paper's, and
the data are the downsampled ImageNet of Chrabaszcz et al. (2017), so the paper's FID is
a target, not a prediction.

Needs ``imagenet_resized/64x64`` prepared by tensorflow_datasets (``tfds build
imagenet_resized/64x64 --file_format=array_record``) where the stages' configs look
(``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``: a cascade takes no overrides).

    jaxgen train experiments/cdm_imagenet64.py      # trains (or resumes) both stages
    jaxgen sample --cascade experiments/cdm_imagenet64.py --num-samples 100
    jaxgen sample --cascade experiments/cdm_imagenet64.py --num-samples 50000 \\
        --augmentation-level 0.1
    jaxgen eval --cascade experiments/cdm_imagenet64.py --augmentation-levels 0,0.1,0.2,0.3,0.5

``sample`` writes each stage's grid and ``.npy`` (32x32, then 64x64) under
``runs/cdm_imagenet64/samples``. jaxgen has no Inception network, so no ImageNet FID:
``eval --cascade`` scores datasets that have a sample-quality score in jaxgen (the digits)
and refuses this one by name; score the 50,000 64x64 samples ``sample`` writes at each
level with a standard FID tool against ImageNet 64x64 statistics.
"""

from jaxgen.run.cascade import CascadeConfig, CascadeStage


def get_cascade() -> CascadeConfig:
    return CascadeConfig(
        name="cdm_imagenet64",
        stages=(
            CascadeStage(
                workdir="runs/cdm_imagenet64_base",
                config="experiments/cdm_imagenet64_base.py",
                sampler="ancestral",
                guidance_scale=1.0,
            ),
            CascadeStage(
                workdir="runs/cdm_imagenet64_sr",
                config="experiments/cdm_imagenet64_sr.py",
                sampler="ddim",
                num_steps=100,
                augmentation_level=0.2,
                guidance_scale=1.0,
            ),
        ),
        num_samples=50_000,
        expected=(
            "FID 1.48 at 64x64 (Ho et al. 2022, class-conditional ImageNet), measured "
            "outside jaxgen on 50,000 samples of `jaxgen sample --cascade`"
        ),
    )
