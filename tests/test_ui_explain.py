"""The explanation pictures: a colour key and the photo beside every heat map, attention-following
opacity, positive score parts with the top answer longest, outlined evidence boxes, and alt text
that says what each picture shows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from czsl_models.models.base import Prediction, RankedPair
from czsl_models.ui.explain import (COLOUR_BAR_HEIGHT, build_visuals, draw_evidence_box, heat_overlay,
                                    heatmap_panels, score_parts_visual, where_in_photo)
from czsl_models.ui.visual import MARK_BAND, MARK_BORDER, mark_not_meaningful
from czsl_models.inputs.vocab import Vocabulary


def test_heat_overlay_shows_the_photo_where_attention_is_low():
    view = Image.new("RGB", (64, 64), (200, 30, 30))
    grid = np.zeros((4, 4))
    grid[0, 0] = 1.0
    overlay = np.asarray(heat_overlay(view, grid), dtype=np.float64)
    low, high = overlay[60, 60], overlay[2, 2]
    assert low[0] > low[1] + 40, "little attention: the (red) photo shows through"
    assert high[1] > 180 and high[2] < 100, "most attention: the colour scale's bright (yellow) end"


def test_every_heat_map_comes_with_the_photo_and_a_colour_key():
    photo = Image.new("RGB", (300, 200), "white")
    picture = heatmap_panels(photo, [("one", np.random.default_rng(0).random((7, 7)))])
    assert picture.width > 2 * 224, "the photo beside the map"
    bottom = np.asarray(picture)[-COLOUR_BAR_HEIGHT:]
    assert bottom.std() > 20, "a colour key under the pictures"
    grid = np.zeros((3, 3))
    grid[0, 2] = 1
    assert where_in_photo(grid) == "the top right" and where_in_photo(np.eye(3)[::-1] * 0 + np.pad(
        np.ones((1, 1)), 1)) == "the centre"


def test_clip_score_parts_are_positive_and_the_top_answer_is_longest():
    ranking = [RankedPair("wet", "dog", -3.0), RankedPair("dry", "dog", -5.0), RankedPair("wet", "cat", -6.0)]
    parts = {"composition": np.array([-3.2, -5.1, -6.05]), "state_times_object": np.array([0.2, 0.1, 0.05])}
    prediction = Prediction("clip", "tiny", False, ranking, [], [], {"score_parts": parts}, np.array([-3.0, -5, -6]))
    visual = score_parts_visual(prediction)
    assert visual is not None and "'wet dog' has the longest bar" in visual.alt
    assert "green" not in visual.caption and "blue" not in visual.caption and "orange" not in visual.caption
    phrase = [float(value) for value in visual.alt.split("Phrase match: ")[1].split(";")[0].split(", ")]
    assert min(phrase) == 0.0 and phrase == sorted(phrase, reverse=True)


def test_evidence_box_is_outlined_in_black_and_white_even_on_the_edge():
    picture = Image.new("RGB", (100, 100), (250, 220, 0))
    draw_evidence_box(picture, (0, 50, 25, 75), "rusty")
    pixels = np.asarray(picture)
    assert (pixels[60, 0:6] == 0).all(axis=1).any(), "black outside"
    assert (pixels[60, 0:8] == 255).all(axis=1).any(), "white inside"
    assert (pixels[30:50, 0:40] == 0).all(axis=-1).sum() > 100, "a black tab with the label"


@pytest.mark.parametrize("model_name", ["clip", "msci", "refiner", "svip"])
def test_every_picture_has_alt_text_and_untrained_ones_are_stamped(tiny_backbone, example_images, model_name):
    from czsl_models import load_model

    model = load_model(model_name, backbone="tiny").eval()
    prediction = model.predict(example_images[1], Vocabulary.build("wet, dry, striped", "cat, dog"), top_k=3)[0]
    visuals = build_visuals(prediction, example_images[1])
    assert visuals
    for visual in visuals:
        assert len(visual.alt) > 30 and visual.image.width > 100
        marked = mark_not_meaningful(visual, "not trained: not meaningful")
        assert "not trained: not meaningful" in marked.alt
        # A frame and a band around the picture: every pixel of the picture itself is still there, uncovered.
        inner = marked.image.crop((MARK_BORDER, MARK_BAND, MARK_BORDER + visual.image.width,
                                   MARK_BAND + visual.image.height))
        assert np.array_equal(np.asarray(inner), np.asarray(visual.image.convert("RGB")))
        assert marked.image.size == (visual.image.width + 2 * MARK_BORDER, visual.image.height + MARK_BAND + MARK_BORDER)


def test_pictures_are_written_once_where_gradio_serves_them(tmp_path):
    from gradio.processing_utils import save_file_to_cache

    from czsl_models.ui.image_files import cached_image_file

    photo = Image.new("RGB", (120, 80), (200, 30, 30))
    panel = cached_image_file(photo, photographic=True, cache_dir=str(tmp_path))
    chart = cached_image_file(photo, photographic=False, cache_dir=str(tmp_path))
    assert panel.endswith(".jpg") and chart.endswith(".png")
    assert Image.open(panel).format == "JPEG" and Image.open(chart).format == "PNG"
    assert np.abs(np.asarray(Image.open(chart), dtype=int) - np.asarray(photo, dtype=int)).max() == 0, "charts lossless"
    assert save_file_to_cache(panel, str(tmp_path)) == panel, "Gradio finds the file already in its cache"
    assert cached_image_file(photo, photographic=True, cache_dir=str(tmp_path)) == panel
    assert len(list(tmp_path.rglob("*.*"))) == 2, "the same picture is stored once, with no partial files left"
