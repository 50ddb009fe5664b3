"""Which OpenCLIP backbones the models run on: every OpenCLIP ViT with its own CLIP text tower does; ResNet and
timm towers get one clear message, in the library, the CLI and the app (which falls back with a banner)."""

from __future__ import annotations

import pytest
import torch

from czsl_models.backbones import (Backbone, UnsupportedBackboneError, get_backbone, load_backbone_uncached,
                                  parse_backbone_spec, unsupported_reason)
from czsl_models.backbones.specs import NEEDS_VIT

UNSUPPORTED = ["random:RN50", "random:ViT-SO400M-14-SigLIP", "RN50:openai", "ViT-B-16-SigLIP:webli"]


def open_clip_configs() -> dict[str, dict]:
    """Every architecture config open_clip ships."""
    import open_clip

    return {name: open_clip.get_model_config(name) for name in open_clip.list_models()}


@pytest.mark.parametrize("spec", UNSUPPORTED)
def test_resnet_and_timm_towers_get_one_clear_message(spec):
    # Said before any download or build, so offline and instantly.
    with pytest.raises(UnsupportedBackboneError, match=f"{NEEDS_VIT}.*Use an OpenCLIP ViT"):
        load_backbone_uncached(spec, "cpu")


def test_every_open_clip_vit_with_a_clip_text_tower_is_accepted():
    configs = open_clip_configs()
    supported = [name for name, config in configs.items() if unsupported_reason(config) is None]
    assert {"ViT-L-14-quickgelu", "ViT-B-16", "ViT-B-32", "ViT-H-14", "ViT-bigG-14"} <= set(supported)
    assert not {"RN50", "ViT-SO400M-14-SigLIP", "EVA02-L-14", "coca_ViT-B-32"} & set(supported)
    import open_clip

    for name in supported:
        config = dict(configs[name])
        quick_gelu = config.pop("quick_gelu", False)
        with torch.device("meta"):  # the structure only: no memory, no time
            model = open_clip.model.CLIP(**config, quick_gelu=quick_gelu)
        Backbone._check_supported(model, parse_backbone_spec(f"random:{name}"))
        visual = model.visual
        for part in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "ln_post", "proj", "patch_dropout"):
            assert hasattr(visual, part), (name, part)


def test_a_real_vit_other_than_the_default_predicts():
    from PIL import Image

    from czsl_models import Vocabulary, load_model

    backbone = get_backbone("random:ViT-B-32", "cpu")
    assert backbone.grid_size == (7, 7)
    for name in ("msci", "svip"):
        prediction = load_model(name, backbone="random:ViT-B-32").predict(
            Image.new("RGB", (64, 48), "red"), Vocabulary.build("red, blue", "ball, cube"), top_k=3)[0]
        assert len(prediction.ranking) == 3


def test_cli_prints_the_message_without_a_traceback(capsys, example_paths):
    from czsl_models.cli import main

    assert main(["predict", str(example_paths[0]), "--backbone", "random:RN50"]) == 2
    error = capsys.readouterr().err
    assert NEEDS_VIT in error and "Traceback" not in error


def test_app_falls_back_with_a_banner_on_an_unsupported_backbone():
    from czsl_models.ui import create_app

    demo, state = create_app("random:RN50")
    assert state.backbone.name == "tiny"
    assert NEEDS_VIT in state.banner and "random" in state.banner
    assert NEEDS_VIT in str(demo.config)


def test_app_falls_back_on_any_backbone_failure(monkeypatch):
    from czsl_models.ui import state as app_state

    real = app_state.get_backbone

    def broken(spec, device=None):
        if str(spec) != "tiny":
            raise TypeError("__init__() got an unexpected keyword argument 'custom_text'")
        return real(spec, device)

    monkeypatch.setattr(app_state, "get_backbone", broken)
    backbone, banner = app_state.load_app_backbone("random:ViT-B-32", "cpu")
    assert backbone.name == "tiny" and "TypeError" in banner and "random" in banner
