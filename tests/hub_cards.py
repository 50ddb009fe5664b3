"""What a Hub model card must hold, checked offline with huggingface_hub's own parser: the YAML parses into
ModelCardData, model-index parses back into EvalResults, repo ids are valid ids, and the fields that make a
checkpoint findable on the Hub are there."""

from __future__ import annotations

from huggingface_hub import ModelCard
from huggingface_hub.utils import validate_repo_id

PIPELINE_TAG = "zero-shot-image-classification"


def checked_card(text: str, model_type: str, base_model: str | None):
    """The parsed card, after asserting the metadata every checkpoint the project writes carries."""
    assert text.startswith("---\n"), text[:80]
    card = ModelCard(text)
    data = card.data
    assert data.library_name == "czsl-models" and data.license == "mit" and data.pipeline_tag == PIPELINE_TAG
    assert {"compositional-zero-shot-learning", "open_clip", model_type} <= set(data.tags)
    assert data.base_model == base_model
    if base_model:
        validate_repo_id(base_model)
    for dataset in data.datasets or []:
        validate_repo_id(dataset)  # Hub dataset ids only
        assert "/" in dataset
    for result in data.eval_results or []:
        assert result.task_type == PIPELINE_TAG and result.dataset_type and result.dataset_name
        assert isinstance(result.metric_value, float) and 0.0 <= result.metric_value <= 100.0
    # A second parse of what the card would write gives the same metadata (to_yaml is what the Hub reads).
    assert ModelCard(str(card)).data.to_dict() == data.to_dict()
    return card
