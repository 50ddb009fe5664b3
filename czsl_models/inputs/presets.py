"""Ready-made vocabularies for the app and the CLI (states x objects)."""

from __future__ import annotations

VOCABULARY_PRESETS: dict[str, tuple[str, str]] = {
    "Everyday photos": (
        "sleeping, sitting, standing, hot, cold, fresh, old, new, shiny, rusty, wet, dry, furry, white, striped",
        "cat, dog, coffee, cup, person, astronaut, rocket, car, apple, bread",
    ),
    "Kitchen": (
        "sliced, whole, rotten, ripe, peeled, cooked, raw, melted, fresh, burnt",
        "apple, bread, tomato, cheese, egg, potato, banana, coffee",
    ),
    "Materials and condition": (
        "rusty, shiny, broken, new, old, wet, dry, dirty, clean, painted",
        "bike, car, fence, bottle, chair, door, metal, wood",
    ),
    "Synthetic shapes": (
        "red, green, blue, yellow, striped, dotted, small, large",
        "circle, square, triangle, star, hexagon",
    ),
}
DEFAULT_PRESET = "Everyday photos"
DEFAULT_STATES, DEFAULT_OBJECTS = VOCABULARY_PRESETS[DEFAULT_PRESET]
