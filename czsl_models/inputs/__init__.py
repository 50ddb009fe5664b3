"""What a user gives: photos (bounded decoding), words and pair lists (Vocabulary), the default word lists and the
example photos shipped with the package."""

from .images import ImageError, load_image
from .vocab import Vocabulary, VocabularyError

__all__ = ["ImageError", "Vocabulary", "VocabularyError", "load_image"]
