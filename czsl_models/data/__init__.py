"""Composition datasets: the czsl layout, image folders, synthetic shapes and safe archive import."""
