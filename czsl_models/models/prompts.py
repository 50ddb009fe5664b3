"""The three prompt branches (composition, state, object), encoded from token embeddings.

One text path for every model: the `clip` baseline uses it with nothing learned; trained models
learn the "a photo of" context of each branch (initialised to its own token embeddings) and a
zero-initialised offset per training word, so an untrained model encodes exactly CLIP's prompts
and words never seen in training simply get no offset.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import torch
from torch import nn

from ..backbones import Backbone, tensor_fingerprint
from ..inputs.vocab import Vocabulary, VocabularyError

BRANCHES = ("pair", "state", "object")
PROMPT_PREFIX = "a photo of"
ENCODE_CHUNK = 1024


def _normalise_word(word: str) -> str:
    return " ".join(word.replace(".", " ").replace("_", " ").split()).casefold()


class PromptEncoder(nn.Module):
    """Builds and encodes the prompts of one vocabulary for the three branches."""

    def __init__(self, backbone: Backbone, train_states: Sequence[str] = (), train_objects: Sequence[str] = (),
                 learnable: bool = True, word_dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout}")
        self.backbone = backbone
        self.learnable = learnable
        # Dropout on the embeddings of the state and object words while training (CSP/Troika/MSCI's
        # attr_dropout on their word embeddings); inference never drops anything.
        self.word_dropout = float(word_dropout)
        self.prefix_ids = backbone.word_tokens(PROMPT_PREFIX)
        with torch.no_grad():
            prefix = backbone.embed_tokens(torch.tensor(self.prefix_ids)).cpu()
        context = prefix.unsqueeze(0).repeat(len(BRANCHES), 1, 1).contiguous()
        self.state_words = [_normalise_word(w) for w in train_states] if learnable else []
        self.object_words = [_normalise_word(w) for w in train_objects] if learnable else []
        self._state_slot = {w: i for i, w in enumerate(self.state_words)}
        self._object_slot = {w: i for i, w in enumerate(self.object_words)}
        if learnable:
            self.context = nn.Parameter(context)
            self.state_offsets = nn.Parameter(torch.zeros(len(self.state_words), backbone.text_width))
            self.object_offsets = nn.Parameter(torch.zeros(len(self.object_words), backbone.text_width))
        else:
            self.register_buffer("context", context, persistent=False)

    # A Backbone is not a Module; keep it out of state_dict and device moves.
    def __setattr__(self, name, value):
        if name == "backbone":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _word_ids(self, word: str) -> list[int]:
        return self.backbone.word_tokens(word)

    def check_lengths(self, vocab: Vocabulary) -> None:
        """Raise VocabularyError when a prompt would not fit the text encoder's context."""
        room = self.backbone.context_length - 2 - len(self.prefix_ids)
        state_lengths = [len(self._word_ids(s)) for s in vocab.states]
        object_lengths = [len(self._word_ids(o)) for o in vocab.objects]
        for words, lengths, other in ((vocab.states, state_lengths, max(object_lengths)),
                                      (vocab.objects, object_lengths, max(state_lengths))):
            for word, length in zip(words, lengths):
                if length + other > room:
                    shown = word if len(word) <= 40 else word[:37] + "..."
                    raise VocabularyError(
                        f"{shown!r} is too long for the text encoder: its prompts need {length + other + len(self.prefix_ids) + 2} "
                        f"tokens and the encoder takes {self.backbone.context_length}. Use a shorter name."
                    )

    def _word_parts(self, vocab: Vocabulary) -> list[tuple[list[int], list[int], list[tuple[int, int]]]]:
        """Per vocabulary word (states, then objects): token ids, offset slots (-1: none) and (word, token) refs."""
        n_state = len(self.state_words)
        parts = []
        for word, name in enumerate(list(vocab.states) + list(vocab.objects)):
            ids = self._word_ids(name)
            if word < len(vocab.states):
                slot = self._state_slot.get(_normalise_word(name), -1)
            else:
                found = self._object_slot.get(_normalise_word(name))
                slot = -1 if found is None else n_state + found
            parts.append((ids, [slot] * len(ids), [(word, k) for k in range(len(ids))]))
        return parts

    def _rows(self, vocab: Vocabulary, branch: str) -> list[tuple[list[int], list[int], list[tuple[int, int]]]]:
        """Token ids, word slots (-1: none) and (word, token) refs after the prefix for each prompt of a branch."""
        parts = self._word_parts(vocab)
        states, objects = parts[:len(vocab.states)], parts[len(vocab.states):]
        if branch == "state":
            return states
        if branch == "object":
            return objects
        return [tuple(a + b for a, b in zip(states[s], objects[o])) for s, o in vocab.pairs]

    def word_matrix(self, vocab: Vocabulary) -> torch.Tensor:
        """[W, L, D] every vocabulary word's embeddings (states, then objects; its token embeddings plus its
        learned offset, zero-padded to the longest word): the matrix word dropout acts on."""
        parts = self._word_parts(vocab)
        longest = max(len(ids) for ids, _, _ in parts)
        token_ids = torch.zeros(len(parts), longest, dtype=torch.long)
        slots = torch.full((len(parts), longest), -1, dtype=torch.long)
        for word, (ids, word_slots, _) in enumerate(parts):
            token_ids[word, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            slots[word, :len(ids)] = torch.tensor(word_slots, dtype=torch.long)
        embeddings = self.backbone.embed_tokens(token_ids)
        if self.learnable and (self.state_words or self.object_words):
            embeddings = embeddings + self._offset_table(embeddings.device)[self._table_slots(slots, embeddings.device)]
        return embeddings

    def _offset_table(self, device: torch.device) -> torch.Tensor:
        # the last row is zero: words without a learned offset
        return torch.cat([self.state_offsets, self.object_offsets,
                          self.state_offsets.new_zeros(1, self.state_offsets.shape[1])]).to(device)

    def _table_slots(self, slots: torch.Tensor, device: torch.device) -> torch.Tensor:
        last = len(self.state_words) + len(self.object_words)
        return torch.where(slots < 0, torch.full_like(slots, last), slots).to(device)

    def _embed_chunk(self, rows: list[tuple[list[int], list[int], list[tuple[int, int]]]], branch_index: int,
                     word_table: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt embeddings [R, L, D] and end positions [R]; with word_table (a dropped-out word_matrix),
        every word position takes its word's row from it, so one word shares one dropout mask everywhere."""
        backbone = self.backbone
        n_prefix = len(self.prefix_ids)
        length = 2 + n_prefix + max(len(ids) for ids, _, _ in rows)
        token_ids = torch.zeros(len(rows), length, dtype=torch.long)
        slots = torch.full((len(rows), length), -1, dtype=torch.long)
        eot = torch.empty(len(rows), dtype=torch.long)
        for row, (ids, word_slots, _) in enumerate(rows):
            end = 1 + n_prefix + len(ids)
            token_ids[row, 0] = backbone.sot_token
            token_ids[row, 1:1 + n_prefix] = torch.tensor(self.prefix_ids)
            token_ids[row, 1 + n_prefix:end] = torch.tensor(ids, dtype=torch.long)
            token_ids[row, end] = backbone.eot_token
            slots[row, 1 + n_prefix:end] = torch.tensor(word_slots, dtype=torch.long)
            eot[row] = end
        embeddings = backbone.embed_tokens(token_ids)
        device = embeddings.device
        context = self.context[branch_index].to(device).unsqueeze(0).expand(len(rows), -1, -1)
        embeddings = torch.cat([embeddings[:, :1], context, embeddings[:, 1 + n_prefix:]], dim=1)
        if word_table is not None:
            # As released: the (dropped-out) word matrix is placed into the prompts.
            rows_at, positions, words, tokens = [], [], [], []
            for row, (_, _, refs) in enumerate(rows):
                for k, (word, token) in enumerate(refs):
                    rows_at.append(row)
                    positions.append(1 + n_prefix + k)
                    words.append(word)
                    tokens.append(token)
            embeddings = embeddings.index_put((torch.tensor(rows_at, device=device), torch.tensor(positions, device=device)),
                                              word_table[torch.tensor(words, device=word_table.device),
                                                         torch.tensor(tokens, device=word_table.device)].to(device))
        elif self.learnable and (self.state_words or self.object_words):
            embeddings = embeddings + self._offset_table(device)[self._table_slots(slots, device)]
        return embeddings, eot

    def cache_key(self, vocab: Vocabulary, branch: str) -> str:
        """Key of a branch's features: backbone, prompts and the trained text parameters."""
        words = {"pair": vocab.key, "state": "\x1f".join(vocab.states), "object": "\x1f".join(vocab.objects)}[branch]
        params = tensor_fingerprint(self._text_parameters()) if self.learnable else "fixed"
        vocab_hash = hashlib.sha1(words.encode()).hexdigest()[:16]
        return f"{self.backbone.name}|{branch}|{vocab_hash}|{params}|{self.backbone.device}"

    def _text_parameters(self) -> list[torch.Tensor]:
        tensors = [self.context]
        if self.learnable:
            tensors += [self.state_offsets, self.object_offsets]
        return tensors

    def dropped_word_matrix(self, vocab: Vocabulary) -> torch.Tensor | None:
        """While training with word dropout: nn.Dropout(word_dropout) applied once to the whole word_matrix,
        as the released attr_dropout acts on the whole soft word-embedding matrix before the words are placed
        in the prompts (one mask per word, shared by every prompt and branch that uses it); else None."""
        if not (self.training and self.word_dropout > 0):
            return None
        return torch.nn.functional.dropout(self.word_matrix(vocab), self.word_dropout, training=True)

    def encode(self, vocab: Vocabulary, branch: str, word_table: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised text features [T, D] of one branch; cached unless gradients are needed. word_table: the
        dropped-out word matrix of this forward pass (dropped_word_matrix; drawn here when not given)."""
        if word_table is None:
            word_table = self.dropped_word_matrix(vocab)
        use_cache = not (torch.is_grad_enabled() and any(t.requires_grad for t in self._text_parameters()))
        use_cache = use_cache and word_table is None  # dropped-out rows are one-offs
        key = self.cache_key(vocab, branch) if use_cache else ""
        if use_cache:
            cached = self.backbone.text_cache.get(key)
            if cached is not None:
                return cached
        rows = self._rows(vocab, branch)
        branch_index = BRANCHES.index(branch)
        features = []
        for start in range(0, len(rows), ENCODE_CHUNK):
            embeddings, eot = self._embed_chunk(rows[start:start + ENCODE_CHUNK], branch_index, word_table)
            encoded = self.backbone.encode_text_embeddings(embeddings, eot, chunk_size=ENCODE_CHUNK)
            features.append(torch.nn.functional.normalize(encoded, dim=-1))
        result = torch.cat(features)
        if use_cache:
            self.backbone.text_cache.put(key, result)
        return result

    def encode_all(self, vocab: Vocabulary) -> dict[str, torch.Tensor]:
        """Features of the three branches: {'pair': [P, D], 'state': [A, D], 'object': [O, D]}."""
        word_table = self.dropped_word_matrix(vocab)  # one draw for the three branches, as released
        return {branch: self.encode(vocab, branch, word_table) for branch in BRANCHES}
