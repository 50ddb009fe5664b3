"""CZSL metrics (best seen / unseen accuracy, harmonic mean, AUC), computed in one streaming pass.

The definition is the evaluator that every CZSL paper reuses (ExplainableML/czsl,
``models/common.py``):

1. The prediction at bias ``b`` is the first argmax over the candidate pairs of
   ``score + b * [pair not seen in training]``.
2. Bias list: for every image whose true pair is unseen and that is predicted correctly at
   ``b = 1e3``, ``d = best seen-pair score - true-pair score``; sort the d's, subtract 1e-4,
   keep every ``max(n // 20, 1)``-th value, then append 1e3.
3. At each bias: seen accuracy over the images whose true pair is seen, unseen accuracy over
   the images whose true pair is unseen (top-1).
4. Best seen / best unseen: maxima of the two curves; best HM: maximum harmonic mean over the
   biases (0 where either accuracy is 0); AUC: trapezoid of seen over unseen accuracy.
   State / object accuracy: state / object of the unbiased (``b = 0``) top-1 pair.

Streaming: each image is reduced to a handful of numbers (best seen and best unseen score and
index, true-pair score, and the best unseen score that precedes a key column, which settles
ties), so memory is O(images), not O(images x pairs).

Exactness: arithmetic runs in the scores' own precision (float64 stays float64, anything else
becomes float32 like the reference's tensors; the first chunk sets it), so ``score + bias``
rounds exactly as in the reference, including large biases that make nearby unseen scores
equal; ties go to the lowest pair index, like ``argmax``. (The reference calls ``topk(1)``,
whose order among exactly equal scores is unspecified and on CPU often not the first index;
with ``argmax`` in its place, a literal torch transcription of the reference agrees with this
evaluator. Such ties are common at ``b = 1e3`` in float32, where steps are 6e-5.)

Masking, a documented difference from the reference: pairs that are not candidates (closed
world) and unseen pairs whose feasibility is below the threshold (open world; a pair exactly
at the threshold is kept, seen pairs always are) can never be predicted, as if their score
were -inf; an image whose true pair is masked as infeasible counts as a miss at every bias (an
image whose true pair is not a candidate is an error). The reference sets non-candidate scores
to -1e10 (the same unless scores go below -1e10) and multiplies infeasible scores by 0, which
only masks them when every score is positive. The best seen score of the bias list is taken over the seen candidate pairs; the
reference's closed world always lists every seen pair as a candidate.

Images: the metrics need at least one image with a seen and one with an unseen true pair (the
reference divides by zero otherwise); ``compute`` raises ``ValueError`` when either is missing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MAX_BIAS = 1e3
BIAS_MARGIN = 1e-4
BIAS_BIN_COUNT = 20
# np.trapz was renamed np.trapezoid in NumPy 2.0 and removed in 2.4; the requirements allow 1.26.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz
# Score entries processed at once inside ``update``; bounds the temporary copies (~16 MB in
# float32) whatever the size of the chunk the caller passes.
BLOCK_ELEMENTS = 1 << 22


@dataclass
class CZSLMetrics:
    """CZSL metrics as fractions in [0, 1], with the seen/unseen accuracy curve over the biases."""

    best_seen: float
    best_unseen: float
    best_hm: float
    AUC: float
    attr_acc: float
    obj_acc: float
    biasterm: list[float]
    seen_curve: list[float]
    unseen_curve: list[float]
    best_hm_bias: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dictionary of every field (JSON-serialisable)."""
        return asdict(self)


def _bool_vector(values: Any, name: str, size: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.bool_:
        if array.dtype.kind not in "iu" or not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be a boolean array, got dtype {array.dtype}")
        array = array.astype(bool)
    if array.ndim != 1 or (size is not None and array.shape[0] != size):
        expected = f"({size},)" if size is not None else "1-D"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array


def _index_vector(values: Any, name: str, size: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.ndim != 1 or (size is not None and array.shape[0] != size):
        expected = f"({size},)" if size is not None else "1-D"
        raise ValueError(f"{name} must have shape {expected}, got {array.shape}")
    return array.astype(np.int64, copy=False)


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor; torch is already imported by the caller
        import torch

        tensor = values.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16
            tensor = tensor.float()
        return tensor.numpy()
    return np.asarray(values)


class StreamingEvaluator:
    """Accumulates score rows chunk by chunk and computes the CZSL metrics at the end."""

    def __init__(
        self,
        pair_states: np.ndarray,
        pair_objects: np.ndarray,
        seen: np.ndarray,
        candidates: np.ndarray | None = None,
        feasibility: np.ndarray | None = None,
        threshold: float | None = None,
    ) -> None:
        self.pair_states = _index_vector(pair_states, "pair_states", None)
        num_pairs = self.pair_states.shape[0]
        if num_pairs == 0:
            raise ValueError("there must be at least one pair")
        self.pair_objects = _index_vector(pair_objects, "pair_objects", num_pairs)
        self.seen = _bool_vector(seen, "seen", num_pairs)
        keep = np.ones(num_pairs, dtype=bool)
        self._non_candidate = np.zeros(num_pairs, dtype=bool)
        if candidates is not None:
            self._non_candidate = ~_bool_vector(candidates, "candidates", num_pairs)
            keep &= ~self._non_candidate
        self._infeasible = np.zeros(num_pairs, dtype=bool)
        if (feasibility is None) != (threshold is None):
            raise ValueError("feasibility and threshold must be given together")
        if feasibility is not None:
            feasibility = np.asarray(feasibility, dtype=np.float64)
            if feasibility.shape != (num_pairs,):
                raise ValueError(f"feasibility must have shape ({num_pairs},), got {feasibility.shape}")
            if np.isnan(feasibility).any():
                raise ValueError("feasibility must not contain NaN")
            # Feasibility only ever removes unseen pairs: a training pair is feasible by definition.
            self._infeasible = ~self.seen & (feasibility < float(threshold))
            keep &= ~self._infeasible
        self.keep = keep
        self._seen_columns = np.flatnonzero(keep & self.seen)
        self._unseen_columns = np.flatnonzero(keep & ~self.seen)
        if self._seen_columns.size == 0 or self._unseen_columns.size == 0:
            raise ValueError(
                "the candidate pairs must include at least one seen and one unseen pair "
                f"(got {self._seen_columns.size} seen, {self._unseen_columns.size} unseen)"
            )
        self._dtype: np.dtype | None = None
        self._chunks: list[dict[str, np.ndarray]] = []

    @property
    def num_pairs(self) -> int:
        """Number of pairs (score columns)."""
        return int(self.pair_states.shape[0])

    @property
    def num_candidate_pairs(self) -> int:
        """Number of pairs that can be predicted after candidate and feasibility masking."""
        return int(self.keep.sum())

    @property
    def num_images(self) -> int:
        """Number of images accumulated so far."""
        return sum(chunk["labels"].shape[0] for chunk in self._chunks)

    def update(self, scores: Any, labels: Any) -> None:
        """Add one chunk of images: scores [n, P] (numpy or torch) and true pair indices [n]."""
        score_array = _to_numpy(scores)
        label_array = _index_vector(_to_numpy(labels), "labels", None)
        if score_array.ndim != 2 or score_array.shape[1] != self.num_pairs:
            raise ValueError(f"scores must have shape (n, {self.num_pairs}), got {score_array.shape}")
        if score_array.shape[0] != label_array.shape[0]:
            raise ValueError(
                f"scores have {score_array.shape[0]} rows but labels have {label_array.shape[0]} entries"
            )
        if label_array.size == 0:
            return
        if label_array.min() < 0 or label_array.max() >= self.num_pairs:
            bad = label_array[(label_array < 0) | (label_array >= self.num_pairs)][0]
            raise ValueError(f"label {bad} is out of range: pair indices go from 0 to {self.num_pairs - 1}")
        # A true pair outside the candidates is a data error; one masked as infeasible is a miss.
        non_candidate = label_array[self._non_candidate[label_array]]
        if non_candidate.size:
            raise ValueError(f"the true pair {int(non_candidate[0])} of an image is not a candidate pair, "
                             "so it can never be predicted")
        if self._dtype is None:
            self._dtype = np.dtype(np.float64 if score_array.dtype == np.float64 else np.float32)
        score_array = np.asarray(score_array, dtype=self._dtype)
        rows_per_block = max(1, BLOCK_ELEMENTS // self.num_pairs)
        for start in range(0, score_array.shape[0], rows_per_block):
            stop = start + rows_per_block
            self._chunks.append(self._summarise(score_array[start:stop], label_array[start:stop]))

    def _summarise(self, block: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Reduce a block of score rows to the per-image numbers the metrics need."""
        rows = np.arange(block.shape[0])
        seen_scores = block[:, self._seen_columns]
        unseen_scores = block[:, self._unseen_columns]
        if not (np.isfinite(seen_scores).all() and np.isfinite(unseen_scores).all()):
            raise ValueError("scores must be finite at every candidate pair (found NaN or inf)")
        seen_position = seen_scores.argmax(axis=1)
        unseen_position = unseen_scores.argmax(axis=1)
        best_seen_index = self._seen_columns[seen_position]
        # Ties between a seen and an unseen pair go to the lower index. Among unseen pairs the
        # bias can round distinct scores to one value; the winner is then the first one reaching
        # the top, so keep the best unseen score before the column that has to win: the true
        # pair for an unseen ground truth, the best seen pair for a seen one.
        key_column = np.where(self.seen[labels], best_seen_index, labels)
        unseen_before_count = np.searchsorted(self._unseen_columns, key_column)
        unseen_before_key = np.full(block.shape[0], -np.inf, dtype=block.dtype)
        for row in np.flatnonzero(unseen_before_count):
            unseen_before_key[row] = unseen_scores[row, : unseen_before_count[row]].max()
        return {
            "labels": labels.copy(),
            "true_score": np.where(self._infeasible[labels], -np.inf, block[rows, labels]).astype(block.dtype),
            "best_seen": seen_scores[rows, seen_position],
            "best_seen_index": best_seen_index,
            "best_unseen": unseen_scores[rows, unseen_position],
            "best_unseen_index": self._unseen_columns[unseen_position],
            "unseen_before_key": unseen_before_key,
        }

    def compute(self) -> CZSLMetrics:
        """Metrics over every image added so far."""
        if not self._chunks:
            raise ValueError("no images were given to the evaluator")
        stats = {name: np.concatenate([chunk[name] for chunk in self._chunks]) for name in self._chunks[0]}
        labels = stats["labels"]
        unseen_truth = ~self.seen[labels]
        num_unseen = int(unseen_truth.sum())
        num_seen = labels.shape[0] - num_unseen
        if num_seen == 0 or num_unseen == 0:
            raise ValueError(
                "the CZSL metrics need images of both seen and unseen pairs "
                f"(got {num_seen} seen, {num_unseen} unseen)"
            )
        to_dtype = self._dtype.type

        def correct_at(bias: np.generic) -> np.ndarray:
            top_unseen = stats["best_unseen"] + bias
            key_first_unseen = stats["unseen_before_key"] + bias < top_unseen
            best_seen = stats["best_seen"]
            seen_hit = (labels == stats["best_seen_index"]) & (
                (best_seen > top_unseen) | ((best_seen == top_unseen) & key_first_unseen)
            )
            unseen_hit = (
                (stats["true_score"] + bias == top_unseen)
                & key_first_unseen
                & ((top_unseen > best_seen) | ((top_unseen == best_seen) & (labels < stats["best_seen_index"])))
            )
            return np.where(unseen_truth, unseen_hit, seen_hit)

        max_bias = to_dtype(MAX_BIAS)
        correct_at_max = correct_at(max_bias)
        calibrated = unseen_truth & correct_at_max
        # Same dtype arithmetic as the reference: (best seen - true) - 1e-4 in the scores' precision.
        gaps = np.sort((stats["best_seen"][calibrated] - stats["true_score"][calibrated]) - to_dtype(BIAS_MARGIN))
        biases = list(gaps[:: max(gaps.shape[0] // BIAS_BIN_COUNT, 1)]) + [max_bias]

        seen_curve, unseen_curve = [], []
        for correct in [correct_at(bias) for bias in biases[:-1]] + [correct_at_max]:
            seen_curve.append(float(correct[~unseen_truth].mean()))
            unseen_curve.append(float(correct[unseen_truth].mean()))
        seen_array, unseen_array = np.array(seen_curve), np.array(unseen_curve)
        # Written as scipy.stats.hmean computes it (the reference's call), so that rounding, hence
        # the argmax among equal harmonic means, is the same; a zero accuracy gives 1 / inf = 0.
        with np.errstate(divide="ignore"):
            harmonic = 1.0 / ((1.0 / seen_array + 1.0 / unseen_array) / 2)
        best_index = int(np.argmax(harmonic))

        unbiased_prediction = np.where(
            stats["best_seen"] > stats["best_unseen"],
            stats["best_seen_index"],
            np.where(
                stats["best_unseen"] > stats["best_seen"],
                stats["best_unseen_index"],
                np.minimum(stats["best_seen_index"], stats["best_unseen_index"]),
            ),
        )
        biasterm = [float(bias) for bias in biases]
        return CZSLMetrics(
            best_seen=float(seen_array.max()),
            best_unseen=float(unseen_array.max()),
            best_hm=float(harmonic[best_index]),
            AUC=float(_trapezoid(seen_array, unseen_array)),
            attr_acc=float((self.pair_states[unbiased_prediction] == self.pair_states[labels]).mean()),
            obj_acc=float((self.pair_objects[unbiased_prediction] == self.pair_objects[labels]).mean()),
            biasterm=biasterm,
            seen_curve=seen_curve,
            unseen_curve=unseen_curve,
            best_hm_bias=biasterm[best_index],
        )


def evaluate_scores(
    scores: Any,
    labels: Any,
    pair_states: np.ndarray,
    pair_objects: np.ndarray,
    seen: np.ndarray,
    candidates: np.ndarray | None = None,
    feasibility: np.ndarray | None = None,
    threshold: float | None = None,
) -> CZSLMetrics:
    """CZSL metrics of a full score matrix [N, P] (streamed internally in row blocks)."""
    evaluator = StreamingEvaluator(pair_states, pair_objects, seen, candidates, feasibility, threshold)
    evaluator.update(scores, labels)
    return evaluator.compute()


def format_metrics_table(metrics: CZSLMetrics) -> str:
    """Human-readable table of the headline metrics (fractions)."""
    rows = [
        ("best seen", metrics.best_seen),
        ("best unseen", metrics.best_unseen),
        ("best HM", metrics.best_hm),
        ("AUC", metrics.AUC),
        ("state acc", metrics.attr_acc),
        ("object acc", metrics.obj_acc),
    ]
    lines = [f"{'metric':<12} {'value':>8}"]
    lines += [f"{name:<12} {value:>8.4f}" for name, value in rows]
    lines.append(f"(best HM at bias {metrics.best_hm_bias:.6g}; {len(metrics.biasterm)} biases on the curve)")
    return "\n".join(lines)


