"""Evaluation: streaming CZSL metrics, feasibility, and evaluating a model on a dataset."""
