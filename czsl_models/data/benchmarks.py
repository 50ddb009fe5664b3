"""The three CZSL benchmarks: where their archives come from and what their published statistics are."""

from __future__ import annotations

from dataclasses import dataclass, field

SPLIT_ARCHIVE = "compositional_split_natural.tar.gz"


@dataclass(frozen=True)
class ArchiveSource:
    """One archive a benchmark is built from: its file name (also its name on a mirror) and where it lives."""

    file_name: str
    urls: tuple[str, ...] = ()  # official first, then places it lived before
    hub_repo: str | None = None  # a Hugging Face dataset repo holding `file_name`, fetched with huggingface_hub


@dataclass(frozen=True)
class Benchmark:
    """A benchmark dataset: its folder under the data root, its archives and its published counts."""

    name: str
    folder: str
    title: str
    archives: tuple[ArchiveSource, ...]
    published: dict[str, int] = field(default_factory=dict)
    licence: str = ""


SPLITS = ArchiveSource(
    SPLIT_ARCHIVE,
    urls=(
        "https://senthilpurushwalkam.com/publications/compositional/compositional_split_natural.tar.gz",
        "https://www.senthilpurushwalkam.com/publication/compositional/compositional_split_natural.tar.gz",
        "http://www.cs.cmu.edu/~spurushw/publication/compositional/compositional_split_natural.tar.gz",
    ),
)

# Published statistics: pair counts from docs/models.md (the czsl splits of Purushwalkam et al. 2019 and
# Naeem et al. 2021); image counts per phase from the same papers' tables.
BENCHMARKS: dict[str, Benchmark] = {
    "mit-states": Benchmark(
        name="mit-states",
        folder="mit-states",
        title="MIT-States",
        archives=(
            ArchiveSource(
                "release_dataset.zip",
                urls=("http://wednesday.csail.mit.edu/joseph_result/state_and_transformation/release_dataset.zip",),
            ),
            SPLITS,
        ),
        published={"states": 115, "objects": 245, "train_pairs": 1262, "val_pairs_seen": 300,
                   "val_pairs_unseen": 300, "test_pairs_seen": 400, "test_pairs_unseen": 400,
                   "open_world_pairs": 28175, "train_images": 30338, "val_images": 10420, "test_images": 12995},
        licence="research use (MIT-States, Isola et al. 2015)",
    ),
    "ut-zappos": Benchmark(
        name="ut-zappos",
        folder="ut-zappos",
        title="UT-Zappos",
        archives=(
            ArchiveSource(
                "ut-zap50k-images.zip",
                urls=("http://vision.cs.utexas.edu/projects/finegrained/utzap50k/ut-zap50k-images.zip",),
            ),
            SPLITS,
        ),
        published={"states": 16, "objects": 12, "train_pairs": 83, "val_pairs_seen": 15, "val_pairs_unseen": 15,
                   "test_pairs_seen": 18, "test_pairs_unseen": 18, "open_world_pairs": 192,
                   "train_images": 22998, "val_images": 3214, "test_images": 2914},
        licence="research use (UT Zappos50K, Yu and Grauman 2014)",
    ),
    "cgqa": Benchmark(
        name="cgqa",
        folder="cgqa",
        title="C-GQA",
        archives=(
            ArchiveSource(
                "cgqa.zip",
                urls=("https://huggingface.co/datasets/nihalnayak/cgqa/resolve/main/cgqa.zip",),
                hub_repo="nihalnayak/cgqa",
            ),
        ),
        published={"states": 413, "objects": 674, "train_pairs": 5592, "val_pairs_seen": 1040,
                   "val_pairs_unseen": 1252, "test_pairs_seen": 888, "test_pairs_unseen": 923,
                   "open_world_pairs": 278362, "train_images": 26920, "val_images": 7280, "test_images": 5098},
        licence="CC BY 4.0 (GQA / Visual Genome images)",
    ),
}

# Folder of each benchmark inside the split archive.
SPLIT_ARCHIVE_FOLDERS = {"mit-states": "mit-states", "ut-zappos": "ut-zap50k"}


def benchmark(name: str) -> Benchmark:
    """The benchmark called `name` (mit-states, ut-zappos or cgqa)."""
    key = name.strip().lower().replace("_", "-")
    aliases = {"mitstates": "mit-states", "utzappos": "ut-zappos", "ut-zap50k": "ut-zappos", "c-gqa": "cgqa"}
    key = aliases.get(key, key)
    if key not in BENCHMARKS:
        from .dataset import DatasetError

        raise DatasetError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def hub_dataset_id(name: str) -> str | None:
    """The Hugging Face dataset repo a benchmark is fetched from (what Hub metadata names), or None where the
    benchmark has no copy on the Hub that this project uses."""
    bench = BENCHMARKS.get(name)
    repos = [source.hub_repo for source in bench.archives if source.hub_repo] if bench else []
    return repos[0] if repos else None


def compare_with_published(summary: dict[str, int], published: dict[str, int]) -> list[tuple[str, int, int]]:
    """(count name, loaded, published) for every published count the loaded dataset differs on."""
    return [(key, int(summary.get(key, -1)), value) for key, value in published.items()
            if int(summary.get(key, -1)) != value]
