"""The example photos, each with its own word list, so one click shows a state the photo actually has."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..inputs.presets import DEFAULT_OBJECTS, DEFAULT_STATES
from ..inputs.examples import examples_dir

EXAMPLES_DIR = examples_dir()  # the repository's examples/, or the installed package's copy


@dataclass(frozen=True)
class Example:
    """One example: a photo, the words to try on it and a short label under its thumbnail."""

    path: str
    states: str
    objects: str
    label: str


# Word lists written for each photo: a few states it shows and a few it does not, and near-miss objects.
EXAMPLE_WORDS: dict[str, tuple[str, str, str]] = {
    "chelsea": ("sleeping, sitting, striped, wet, furry, angry", "cat, dog, tiger, rabbit", "cat"),
    "old_coins": ("old, new, shiny, broken, stacked", "coin, button, cookie, medal", "old coins"),
    "blurry_clock": ("blurry, sharp, broken, old, new", "clock, plate, wheel, ball", "blurry clock"),
    "black_horse": ("black, white, brown, running, standing, sleeping", "horse, dog, cow, car", "black horse"),
    "striped_triangle": ("striped, dotted, red, blue, small, large", "triangle, square, circle, star",
                         "striped triangle"),
    "coffee": ("hot, cold, full, empty, spilled, frozen", "coffee, tea, soup, cup", "coffee"),
    "dotted_square": ("striped, dotted, red, blue, small, large", "triangle, square, circle, star",
                      "dotted square"),
    "astronaut": ("smiling, sleeping, young, old, wet, standing", "astronaut, person, pilot, doll", "astronaut"),
    "rocket": ("launching, standing, new, rusty, broken, old", "rocket, tower, car, bottle", "rocket"),
}


def example_catalogue(folder: Path | None = None) -> list[Example]:
    """The shipped example photos in catalogue order (those with word lists first), each with its words."""
    folder = folder or EXAMPLES_DIR
    files = {path.stem: path for path in sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png"))}
    ordered = [stem for stem in EXAMPLE_WORDS if stem in files] + sorted(set(files) - set(EXAMPLE_WORDS))
    examples = []
    for stem in ordered:
        states, objects, label = EXAMPLE_WORDS.get(stem, (DEFAULT_STATES, DEFAULT_OBJECTS, stem.replace("_", " ")))
        examples.append(Example(str(files[stem]), states, objects, label))
    return examples


def examples_for_paths(paths: list[str]) -> list[Example]:
    """Examples for given photo files (the words of a known photo, else the everyday list)."""
    examples = []
    for path in paths:
        stem = Path(path).stem
        states, objects, label = EXAMPLE_WORDS.get(stem, (DEFAULT_STATES, DEFAULT_OBJECTS, stem.replace("_", " ")))
        examples.append(Example(str(path), states, objects, label))
    return examples
