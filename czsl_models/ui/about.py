"""The About tab: what compositional zero-shot recognition is, what each model does, and the papers."""

from __future__ import annotations

import gradio as gr

ABOUT_TEXT = """
## What this app does

Things in photos have a **state** and an **object**: a *sliced* apple, a *rusty* bike, a *wet* dog.
A person who has seen sliced bread and a whole apple knows what a sliced apple looks like, even if
they never saw one. **Compositional zero-shot recognition** asks a computer to do the same: recognise
new combinations of states and objects it already knows.

You type the states and objects you care about; the app scores every combination against the photo
and ranks them. "Every state with every object" (the *open world*) considers all combinations, while
"Only the pairs I list" (the *closed world*) considers just the ones you write down.

All models here build on **CLIP** (through [OpenCLIP](https://github.com/mlfoundations/open_clip)), a
model that learned from hundreds of millions of photos and captions how well a picture matches a piece
of text. They share one copy of it and differ only in what they add on top.

## The models

| Model | In one sentence | Paper |
| --- | --- | --- |
| **CLIP baseline** | Compares the photo with "a photo of a *state* *object*", "a photo of *state*" and "a photo of *object*"; nothing is learned. | [Radford et al., 2021](https://arxiv.org/abs/2103.00020) |
| **MSCI** | Lets each description look at the photo twice, first at small local details (early layers of the network), then at the whole scene (late layers), and learns how much to trust each. | [Wang et al., IJCAI 2025 (arXiv 2505.10289)](https://arxiv.org/abs/2505.10289), [code](https://github.com/ltpwy/MSCI) |
| **Refiner** | Sends three groups of learned "questions" (about the state, the object and the pair) over the photo and uses their answers to sharpen the picture's description. | [Fine-grained Cross-modal Concepts Refinement for CZSL, ICASSP 2025](https://openreview.net/forum?id=DDyaBfA45f) |
| **SVIP** | Finds the parts of the photo unrelated to any state or object, gives them learned context instead, and points at the part of the photo that supports each answer. | [Chen et al., ICCV 2025 (arXiv 2503.10252)](https://arxiv.org/abs/2503.10252), [code](https://github.com/uqzhichen/SVIP) |

**About Refiner:** no code or full text of the Refiner paper is public. The Refiner here is a
*reconstruction from its abstract*, built in the style of its family of models (Troika, MSCI); it is
not the authors' implementation and its numbers are not theirs.

**About MSCI's local/global switch:** the paper says MSCI adjusts how much it trusts the details and the
whole scene for each description, but publishes no equations for it, and the authors' code never uses its
switch. The switch here is our *reconstruction*. The explanation therefore shows first what each look
actually added to the score, and the switch's share only for reference.

**About SVIP:** the original recognises animals and birds from lists of attributes; here its three ideas
(find unrelated patches, give them context, locate each label on the photo) are adapted to free-text
states and objects.

## Trained or not?

Each model starts as an exact copy of the CLIP baseline: everything it adds begins at zero. Until it is
trained (in the **Train** tab, or by loading trained weights) it ranks exactly like the baseline, and
the pictures that explain its answers come from parts that have learned nothing yet.

## Reading the scores (Evaluate tab)

Models are tested on photos of combinations they saw during training (**seen**) and of combinations
they never saw (**unseen**). A model can trade one for the other by favouring new combinations more or
less; the curve in the Evaluate tab shows every trade-off.

- **Best seen / best unseen**: the best accuracy on each kind of photo.
- **HM** (harmonic mean): the best balance of the two; it is high only when both are.
- **AUC**: the area under the whole seen-unseen curve, a single summary of every trade-off.

The numbers follow the evaluation every paper in this field uses
([ExplainableML/czsl](https://github.com/ExplainableML/czsl)); the datasets are MIT-States, UT-Zappos
and C-GQA, or your own photos in folders.

## How to read the pictures

- **The answer card.** "Best guess" is the combination the model ranks first; the word beside it says how
  clearly it won (*sure*, *fairly sure*, or *unsure: a close call* when the runner-up is nearly as likely).
  The bars under it show how likely the model finds each answer. On the demo model (random weights) there
  are no numbers at all, only a "random — demo mode" stamp.
- **Heat maps** (MSCI, Refiner). The photo is shown as the model sees it (the centre square), then the same
  photo with colour where the model paid attention: the stronger and yellower the colour, the more
  attention; where the photo shows through, it hardly looked. The key under the pictures runs from "less"
  to "more attention". Attention shows where a model *looked*, not proof of *why* it answered.
- **Bar charts.** Each bar is labelled with what it measures; the caption under each chart says how to
  read it. In "How each score is made" (CLIP baseline) the longest bar is the best answer.
- **Evidence boxes** (SVIP). Each copy of the photo has one outlined box, with the word written on it:
  the part of the photo that matches that state or object best.
- **Kept and replaced parts** (SVIP). Shaded squares are the parts the model set aside as unrelated to
  any state or object.
- **"Show anyway (not trained: not meaningful)".** A model that has not been trained answers like the
  CLIP baseline, and its own pictures come from parts that have learned nothing: they are hidden until you
  ask for them, and stamped.

## Citing the papers

```bibtex
@inproceedings{wang2025msci,
  title     = {{MSCI}: Addressing {CLIP}'s Inherent Limitations for Compositional Zero-Shot Learning},
  author    = {Wang, Yue and Xu, Shuai and Zhu, Xuelin and Li, Yicong},
  booktitle = {Proceedings of the Thirty-Fourth International Joint Conference on Artificial Intelligence (IJCAI)},
  pages     = {2009--2017},
  year      = {2025},
  doi       = {10.24963/ijcai.2025/224}
}

@inproceedings{zhang2025refiner,
  title     = {Refiner: Fine-grained Cross-modal Concepts Refinement for Compositional Zero-Shot Learning},
  author    = {Zhang and others},
  booktitle = {IEEE International Conference on Acoustics, Speech and Signal Processing (ICASSP)},
  year      = {2025},
  note      = {DBLP conf/icassp/ZhangJCM025; OpenReview DDyaBfA45f}
}

@inproceedings{chen2025svip,
  title     = {{SVIP}: Semantically Contextualized Visual Patches for Zero-Shot Learning},
  author    = {Chen, Zhi and Zhao, Zecheng and Guo, Jingcai and Li, Jingjing and Huang, Zi},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2025},
  note      = {arXiv:2503.10252}
}
```

Refiner's full author list is not given here: take it from its DBLP or IEEE entry.

## Photos

The example photos come from scikit-image's sample data (public domain, CC0, or no known copyright
restrictions), and the two shapes are drawn by this app; see `examples/LICENSES.md`.
"""


def runtime_text(backbone_name: str, device: str, precision: str) -> str:
    """The About tab's note on what this server runs: the backbone, the device and the image tower's precision."""
    how = {"float32": "float32, the reference arithmetic",
           "bfloat16": "bfloat16 (about twice as fast as float32 where the processor has it natively; scores agree "
                       "with float32 to about 1e-4)",
           "float16": "half precision under autocast",
           "int8": "int8 weights in its Linear layers"}.get(precision, precision)
    return (f"## This server\n\nBackbone `{backbone_name}` on `{device}`; its image encoder computes in {how}. "
            "The host chooses this with `--backbone-precision` or `CZSL_BACKBONE_PRECISION` (auto, float32, "
            "bfloat16, float16, int8).")


def build_about_tab(runtime: str = "") -> None:
    """Lay out the About tab (text only), with the server's runtime note when given."""
    gr.Markdown(ABOUT_TEXT + ("\n" + runtime if runtime else ""), elem_id="about-text")
