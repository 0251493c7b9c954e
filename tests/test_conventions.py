"""Every public loss and sampler of every family follows the shared conventions (issue 12).

* **Discovery.** The public namespaces' ``__all__`` are walked and functions are classified
  by name (losses: ``*_loss``, ``*_losses``, ``*_loss_at``, ``*_objective``, ``*_penalty``
  and a few named estimators; samplers: ``*_sample``, ``sample``, ``sample_*``,
  ``*_sample_*`` and the controllable PC samplers). Each must have a case in
  :mod:`tests.conventions_cases` or an exemption with its reason, so a new public loss or
  sampler without a case fails this module.
* **Losses** return ``(per_example (B,), terms)`` with finite values and every term of
  leading dimension ``B``; only the game objectives add a third element, a dict of state
  updates; ``vae_gan_losses`` returns ``{player: (per_example, terms)}``. Options (every
  parameter with a default) are keyword-only.
* **Samplers** return :class:`jaxgen.core.SamplerOutput` with ``B`` samples and ``nfe``
  equal to the documented count for the call: a positive Python ``int`` that equals the
  number of network calls actually made (counted with every loop running in Python under
  ``jax.disable_jit``), or a positive integer array for an adaptive solver. The size is the
  positional ``shape`` right after ``key``; options are keyword-only.
* **Index independence.** A draw of ``B`` examples with one key equals the first ``B`` rows
  of a draw of ``2B`` with the per-example keys ``example_keys(key, 2B)``: exactly for
  fixed-work samplers, to 1e-6 for the adaptive ODE solver (each example has its own step
  sizes, so equality is expected, but a vmapped while loop's idle iterations need not be
  bitwise neutral).

Known violations are marked ``xfail(strict=True)`` with the reason, for the lead to fix in
the family packages.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.core import SamplerOutput, example_keys
from tests.conventions_cases import (
    LOSS_CASES,
    LOSS_EXEMPT,
    SAMPLER_CASES,
    SAMPLER_EXEMPT,
    B,
    Counter,
    LossCase,
    SamplerCase,
)

NAMESPACES: tuple[str, ...] = (
    "jaxgen.diffusion",
    "jaxgen.sde",
    "jaxgen.sde.samplers",
    "jaxgen.vae",
    "jaxgen.gan",
    "jaxgen.gan.pix2pix",
    "jaxgen.flows",
    "jaxgen.autoregressive",
    "jaxgen.flow_matching",
)
LOSS_SUFFIXES: tuple[str, ...] = ("_loss", "_losses", "_loss_at", "_objective", "_penalty")
# Estimators and objectives whose name does not say so (namespace-qualified: vae.log_likelihood
# is a decoder density helper, sde.log_likelihood an estimator).
LOSS_NAMED: frozenset[str] = frozenset(
    {
        "autoregressive.image_nll",
        "autoregressive.token_cross_entropy",
        "diffusion.variational_bound",
        "diffusion.variational_bound_estimate",
        "flows.flow_nll",
        "flow_matching.log_likelihood",
        "flow_matching.bits_per_dim",
        "sde.log_likelihood",
        "sde.bits_per_dim",
        "vae.importance_log_likelihood",
        "vae.ladder_importance_log_likelihood",
        "vae.vq_negative_elbo",
        "vae.kl_monte_carlo",
    }
)
SAMPLER_NAMED: frozenset[str] = frozenset({"sde.samplers.pc_inpaint", "sde.samplers.pc_colorize"})
SIZE_NAMES: frozenset[str] = frozenset({"n", "num_samples", "batch", "batch_size", "size"})

# (test, case name) -> reason: real violations of the conventions, reported to the lead.
VIOLATIONS: dict[tuple[str, str], str] = {}


def _qualified(namespace: str, name: str) -> str:
    return f"{namespace.removeprefix('jaxgen.')}.{name}"


def _is_loss(qualified: str, name: str) -> bool:
    return name.endswith(LOSS_SUFFIXES) or qualified in LOSS_NAMED


def _is_sampler(qualified: str, name: str) -> bool:
    return (
        name == "sample"
        or name.endswith("_sample")
        or name.startswith("sample_")
        or "_sample_" in name
        or qualified in SAMPLER_NAMED
    )


def public_functions() -> dict[str, Any]:
    """``{namespace.name: function}`` for the callables (not classes, not modules) in the
    namespaces' ``__all__``; a function exported twice is listed under its first name."""
    out: dict[str, Any] = {}
    seen: set[int] = set()
    for namespace in NAMESPACES:
        module = importlib.import_module(namespace)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or inspect.isclass(obj) or not callable(obj):
                continue
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            out[_qualified(namespace, name)] = obj
    return out


PUBLIC = public_functions()
DISCOVERED = {
    "loss": {q for q in PUBLIC if _is_loss(q, q.rsplit(".", 1)[1])},
    "sampler": {q for q in PUBLIC if _is_sampler(q, q.rsplit(".", 1)[1])},
}
COVERED = {
    "loss": ({c.name for c in LOSS_CASES}, LOSS_EXEMPT),
    "sampler": ({c.name for c in SAMPLER_CASES}, SAMPLER_EXEMPT),
}


def _params(test: str, items: list[Any], name_of) -> list[Any]:
    params = []
    for item in items:
        name = name_of(item)
        reason = VIOLATIONS.get((test, name))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        ident = item.id if isinstance(item, SamplerCase) else name
        params.append(pytest.param(item, marks=marks, id=ident))
    return params


def _loss_params(test: str) -> list[Any]:
    return _params(test, LOSS_CASES, lambda c: c.name)


def _sampler_params(test: str) -> list[Any]:
    return _params(test, SAMPLER_CASES, lambda c: c.name)


def _sampler_names(test: str) -> list[Any]:
    names = sorted({c.name for c in SAMPLER_CASES})
    return _params(test, names, lambda n: n)


# ----------------------------------------------------------------------------- discovery


@pytest.mark.parametrize("kind", ["loss", "sampler"])
def test_every_public_loss_and_sampler_has_a_case(kind):
    cased, exempt = COVERED[kind]
    assert not cased & set(exempt), f"both a case and exempt: {sorted(cased & set(exempt))}"
    covered = cased | set(exempt)
    missing = sorted(DISCOVERED[kind] - covered)
    stale = sorted(covered - DISCOVERED[kind])
    assert not missing, f"public {kind} functions without a case or exemption: {missing}"
    assert not stale, f"cases or exemptions that name no public {kind}: {stale}"


def test_exemptions_are_what_they_say():
    """An exempt loss returns one bare (B,) array; an exempt sampler returns no
    SamplerOutput (it samples no model)."""
    for name in LOSS_EXEMPT:
        ret = inspect.signature(PUBLIC[name]).return_annotation
        assert "tuple" not in str(ret) and "dict" not in str(ret), (name, ret)
    for name in SAMPLER_EXEMPT:
        ret = inspect.signature(PUBLIC[name]).return_annotation
        assert "SamplerOutput" not in str(ret), (name, ret)


# ----------------------------------------------------------------------------- losses


def _check_per_example_and_terms(result: Any, batch: int, where: str) -> None:
    assert isinstance(result, tuple) and len(result) >= 2, (
        f"{where}: expected (per_example, terms), got {type(result).__name__}"
    )
    per_example, terms = result[0], result[1]
    assert isinstance(per_example, jax.Array), f"{where}: per_example is {type(per_example)}"
    assert per_example.shape == (batch,), f"{where}: per_example shape {per_example.shape}"
    assert np.all(np.isfinite(np.asarray(per_example))), f"{where}: {per_example}"
    assert isinstance(terms, dict), f"{where}: terms is {type(terms).__name__}"
    for name, value in terms.items():
        assert isinstance(name, str), f"{where}: term name {name!r}"
        shape = jnp.shape(value)
        assert len(shape) >= 1 and shape[0] == batch, f"{where}: term {name!r} shape {shape}"


@pytest.mark.parametrize("case", _loss_params("loss"))
def test_loss_returns_per_example_and_terms(case: LossCase):
    result = case.run()
    if case.players:
        assert isinstance(result, dict) and result, type(result)
        for player, value in result.items():
            assert isinstance(value, tuple) and len(value) == 2, (player, type(value))
            _check_per_example_and_terms(value, B, f"{case.name}[{player}]")
        return
    _check_per_example_and_terms(result, B, case.name)
    if case.game:
        assert len(result) == 3, f"a game objective returns 3 elements, got {len(result)}"
        assert isinstance(result[2], dict), f"state_updates is {type(result[2]).__name__}"
    else:
        assert len(result) == 2, f"only game objectives return state updates; got {len(result)}"


def _defaulted_not_keyword_only(fn: Any) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.default is not inspect.Parameter.empty and p.kind is not p.KEYWORD_ONLY
    ]


@pytest.mark.parametrize("name", sorted({c.name for c in LOSS_CASES}))
def test_loss_options_are_keyword_only(name: str):
    assert not _defaulted_not_keyword_only(PUBLIC[name])


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("name", _sampler_names("sampler_signature"))
def test_sampler_takes_shape_after_key(name: str):
    params = list(inspect.signature(PUBLIC[name]).parameters.values())
    names = [p.name for p in params]
    assert "key" in names, names
    after = params[names.index("key") + 1]
    assert after.name == "shape", f"parameter after key: {after.name!r} ({names})"
    assert after.kind is after.POSITIONAL_OR_KEYWORD and after.default is after.empty
    assert not SIZE_NAMES & set(names), f"size given by {sorted(SIZE_NAMES & set(names))}"
    assert not _defaulted_not_keyword_only(PUBLIC[name])


@pytest.mark.parametrize("case", _sampler_params("sampler_output"))
def test_sampler_output_and_nfe(case: SamplerCase):
    counter = Counter()
    key = jax.random.key(3)
    if case.countable:
        with jax.disable_jit():  # every scan / fori_loop runs in Python: one call per step
            out = case.draw(key, B, counter)
    else:
        out = case.draw(key, B, counter)
    assert isinstance(out, SamplerOutput), type(out)
    assert jnp.shape(out.samples)[:1] == (B,), jnp.shape(out.samples)
    if case.nfe is None:  # adaptive: an integer array counted by the solver
        nfe = out.nfe
        assert isinstance(nfe, jax.Array) and jnp.issubdtype(nfe.dtype, jnp.integer), nfe
        # (s - 1) n + a_1 >= s = 7 for Tsit5: at least one accepted step of 7 stages.
        assert nfe.shape == () and int(nfe) >= 7, nfe
    else:
        assert type(out.nfe) is int, f"nfe is {type(out.nfe).__name__}, expected a static int"
        assert out.nfe == case.nfe
    if case.countable:
        assert counter.calls == case.nfe, f"{counter.calls} network calls, nfe = {out.nfe}"


@pytest.mark.parametrize("case", _sampler_params("sampler_index"))
def test_sampler_samples_depend_only_on_seed_and_index(case: SamplerCase):
    key = jax.random.key(11)
    one = case.draw(key, B, Counter())
    many = case.draw(example_keys(key, 2 * B), 2 * B, Counter())
    first = np.asarray(many.samples)[:B]
    other = case.draw(jax.random.key(12), B, Counter())
    assert np.any(np.asarray(other.samples) != np.asarray(one.samples)), "the key is not used"
    if case.nfe is None:
        np.testing.assert_allclose(np.asarray(one.samples), first, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(np.asarray(one.samples), first)
