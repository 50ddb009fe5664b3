"""Composition datasets: the czsl layout, image folders, synthetic shapes, and safe zip import.

Three layouts load into one `CompositionDataset`:

* **czsl** (MIT-States, UT-Zappos, C-GQA)::

      <root>/images/...                                      paths as in the metadata
      <root>/<split>/{train,val,test}_pairs.txt               one "state object" per line
      <root>/metadata_<split>.t7                              torch.save'd list of dicts

  with ``<split>`` = ``compositional-split-natural`` unless ``split_name`` says otherwise.
  Image membership comes only from each record's ``set``; ``NA`` records and records whose
  pair is not in the pair file of their own set are dropped (and counted in ``dropped``).

* **image folder**: ``<root>/<state> <object>/<image files>``. The last word of a folder name
  is the object and the words before it are the state; underscores and dots read as spaces,
  so ``old_rusty bike`` is ("old rusty", "bike") and a folder name without spaces splits at
  its last underscore (``sliced_apple``). An optional ``split.json`` or ``split.txt`` lists
  the train / val / test pairs and can name the split of a multi-word object explicitly::

      split.json   {"train": ["red apple", ["old", "rusty bike"]], "val": [...], "test": [...]}
      split.txt    train: red apple
                   test: old | rusty bike

  Without a split file, a seeded fraction of the pairs is held out as unseen (half for val,
  half for test) while every state and object keeps a training pair, and the images of the
  seen pairs are split 80/10/10.

* **synthetic**: ``synthetic:shapes[?images_per_pair=20&seed=0&...]``, coloured / textured /
  sized shapes drawn on the fly from their index (nothing is written to disk).

Names are shown lowercased with ``.`` and ``_`` read as spaces (UT-Zappos ``Faux.Leather`` is
"faux leather"); the raw names are kept for matching metadata. States and objects follow
the sorted order of their raw names, the order of the published open-world tensors.
"""

from .archive import ZipImportReport, import_zip
from .dataset import (
           PHASES,
           SYNTHETIC_PREFIX,
           CompositionDataset,
           DatasetError,
           Sample,
           hold_out_unseen_pairs,
)
from .sources import detect_layout, load_dataset

__all__ = ["PHASES", "SYNTHETIC_PREFIX", "CompositionDataset", "DatasetError", "Sample", "ZipImportReport",
           "detect_layout", "hold_out_unseen_pairs", "import_zip", "load_dataset"]
