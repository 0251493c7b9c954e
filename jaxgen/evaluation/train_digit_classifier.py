"""Train the digit-FD feature classifier and write ``digit_classifier.npz``.

Run::

    python -m jaxgen.evaluation.train_digit_classifier            # writes the shipped weights
    python -m jaxgen.evaluation.train_digit_classifier --out /tmp/c.npz --steps 500   # quick

Trains :class:`jaxgen.nets.digit_classifier.DigitClassifier` on the digits ``train``
split only (the ``test`` split stays held out, because digit FD compares samples
against it), with a fixed seed, Adam with a cosine-decayed learning rate and random
1-pixel shifts (background-filled), so that samples that are slightly off-centre
still land near real digits in feature space. On CPU it takes well under a minute and
should reach about 100% train and >= 97% test accuracy (the result of the shipped
weights is in :mod:`jaxgen.evaluation.digit_fd`).
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgen.data.digits import load_digits
from jaxgen.evaluation.digit_fd import WEIGHTS_PATH, flatten_params
from jaxgen.nets.digit_classifier import DigitClassifier

BACKGROUND = -1.0  # the [-1, 1] value of grey level 0


def random_shift(key: jax.Array, images: jax.Array, *, max_shift: int = 1) -> jax.Array:
    """Shift each (8, 8, C) image by an independent offset in [-max_shift, max_shift]^2.

    Pixels shifted in from outside are background (-1).
    """
    n, h, w, _ = images.shape
    pad = ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0))
    padded = jnp.pad(images, pad, constant_values=BACKGROUND)
    offsets = jax.random.randint(key, (n, 2), 0, 2 * max_shift + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy (N,)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def train(
    *,
    seed: int = 0,
    num_steps: int = 4000,
    batch_size: int = 128,
    learning_rate: float = 2e-3,
    weight_decay: float = 1e-4,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Train on the ``train`` split; return (params as a pure dict, metrics)."""
    train_x, train_y = load_digits("train")
    test_x, test_y = load_digits("test")

    graphdef, state = nnx.split(DigitClassifier(rngs=nnx.Rngs(seed)))
    params = nnx.to_pure_dict(state)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps=min(100, num_steps // 10), decay_steps=num_steps
    )
    tx = optax.adamw(schedule, weight_decay=weight_decay)
    opt_state = tx.init(params)

    data_x = jnp.asarray(train_x)
    data_y = jnp.asarray(train_y)

    def loss_fn(p, x, y):
        return jnp.mean(cross_entropy(nnx.merge(graphdef, p)(x), y))

    @jax.jit
    def step(p, o, key):
        k_idx, k_shift = jax.random.split(key)
        idx = jax.random.choice(k_idx, data_x.shape[0], (batch_size,), replace=False)
        x = random_shift(k_shift, data_x[idx])
        loss, grads = jax.value_and_grad(loss_fn)(p, x, data_y[idx])
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    key = jax.random.key(seed + 1)
    for i in range(num_steps):
        key, sub = jax.random.split(key)
        params, opt_state, loss = step(params, opt_state, sub)
        if (i + 1) % 500 == 0 or i == 0:
            print(f"step {i + 1:5d}  loss {float(loss):.4f}", flush=True)

    predict = jax.jit(lambda p, x: jnp.argmax(nnx.merge(graphdef, p)(x), axis=-1))
    metrics = {
        "train_accuracy": float(np.mean(np.asarray(predict(params, train_x)) == train_y)),
        "test_accuracy": float(np.mean(np.asarray(predict(params, test_x)) == test_y)),
        "num_params": int(sum(np.size(v) for v in jax.tree.leaves(params))),
        "final_loss": float(loss),
    }
    return params, metrics


def save_params(path: str | pathlib.Path, params: dict[str, Any]) -> None:
    """Write params as an .npz of flattened paths ("conv1/kernel") -> float32 arrays."""
    flat = {k: np.asarray(v, dtype=np.float32) for k, v in flatten_params(params).items()}
    np.savez(path, **flat)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(WEIGHTS_PATH))
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    params, metrics = train(seed=args.seed, num_steps=args.steps)
    for name, value in metrics.items():
        print(f"{name}: {value}")
    save_params(args.out, params)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
