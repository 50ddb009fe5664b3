"""Parity with the released SVIP code (uqzhichen/SVIP `main.py`): the consistency term, its gradients, and
gradient-norm clipping at 1."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from czsl_models.models.svip_patches import consistency_kl


def released_kl(cos_source: torch.Tensor, cos_target: torch.Tensor, kl_t: float = 20.0) -> torch.Tensor:
    """main.py: kld = torch.nn.KLDivLoss(); kld(F.log_softmax(cos_source / kl_t, 1), F.softmax(cos_target / kl_t, 1))
    * kl_t * kl_t; source = the unedited image's cosines, target = the edited (contextualised) one's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that 'mean' will change meaning
        kld = torch.nn.KLDivLoss()
        return kld(F.log_softmax(cos_source / kl_t, dim=1), F.softmax(cos_target / kl_t, dim=1)) * kl_t * kl_t


@pytest.mark.parametrize("batch, classes", [(4, 7), (16, 192)])
def test_consistency_value_and_gradients_as_released(batch, classes):
    generator = torch.Generator().manual_seed(batch * classes)
    original = (2 * torch.rand(batch, classes, generator=generator, dtype=torch.float64) - 1).requires_grad_()
    contextual = (original.detach() + 0.3 * torch.randn(batch, classes, generator=generator, dtype=torch.float64))
    contextual.requires_grad_()
    expected = released_kl(original, contextual)
    expected_grads = torch.autograd.grad(expected, (original, contextual))
    got = consistency_kl(contextual, original, 20.0)
    got_grads = torch.autograd.grad(got, (original, contextual))
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    for mine, theirs in zip(got_grads, expected_grads):  # both sides get a gradient: no detach, as released
        assert theirs.abs().max() > 0
        torch.testing.assert_close(mine.double(), theirs, rtol=0, atol=1e-5 * float(theirs.abs().max()))
    # The released reduction is the mean over all B·C elements: C times smaller than a batch mean
    batchmean = F.kl_div(F.log_softmax(original / 20, 1), F.softmax(contextual / 20, 1), reduction="batchmean") * 400
    assert got.item() == pytest.approx(batchmean.item() / classes, rel=1e-5)
    # and the direction is KL(edited ‖ original), not KL(original ‖ edited) (sharp inputs make the two differ)
    sharp_original, sharp_contextual = 60 * original.detach(), 60 * contextual.detach()
    mine = consistency_kl(sharp_contextual, sharp_original, 20.0).item()
    assert mine == pytest.approx(released_kl(sharp_original, sharp_contextual).item(), rel=1e-5)
    assert mine != pytest.approx(released_kl(sharp_contextual, sharp_original).item(), rel=1e-2)


def test_svip_recipe_clips_gradients_at_one():
    from czsl_models.training import TrainConfig
    from czsl_models.training.config import resolve_recipe

    for preset in ("fast", "paper"):
        assert resolve_recipe(TrainConfig(model="svip", dataset="cgqa", out="x", preset=preset), "cgqa").max_grad_norm == 1.0
        assert resolve_recipe(TrainConfig(model="msci", dataset="cgqa", out="x", preset=preset), "cgqa").max_grad_norm == 0.0


def test_trainer_clips_the_global_gradient_norm(tmp_path, monkeypatch):
    """Every optimiser step of an SVIP run first clips the trainable parameters' global norm to 1
    (torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1) in main.py)."""
    import accelerate

    from czsl_models.training import TrainConfig, train

    calls: list[tuple[float, float]] = []
    original = accelerate.Accelerator.clip_grad_norm_

    def recording(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        total = original(self, parameters, max_norm, norm_type)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters if p.grad is not None]))
        calls.append((float(max_norm), float(after)))
        return total

    monkeypatch.setattr(accelerate.Accelerator, "clip_grad_norm_", recording)
    config = TrainConfig(model="svip", dataset="synthetic:shapes?images_per_pair=2", out=str(tmp_path / "svip"),
                         backbone="tiny", epochs=1, batch_size=16, num_workers=0, cache_dir=str(tmp_path / "cache"))
    result = train(config)
    assert result.training_steps >= 1 and len(calls) == result.training_steps
    assert all(limit == 1.0 and after <= 1.0 + 1e-4 for limit, after in calls)
