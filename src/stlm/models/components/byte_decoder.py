"""The byte decoder head of STLM's tokenizer-free model (Hillier, Guertler et al., 2024, section
5.2): from each position's core state, a small causal byte transformer spells the next token's
chunk byte by byte (teacher-forced in training), then predicts end of chunk, replacing the
d_model x vocabulary output projection.

The public code decoded the 12 padded bytes of a chunk independently of each other, trained on
the padding, and added its position encoding twice; here byte j is predicted from the core state
and bytes < j (causal), only real symbols are scored, and the end-of-chunk symbol models the
chunk's length. Chunk symbols and the end-of-text symbol are defined in `stlm.data.chunks`.

The probability of a token is the probability of its chunk: p(b_0 .. b_{n-1}, EOC | h), a product
of n + 1 symbol probabilities. `loss` is its mean negative log over positions (nats per token,
comparable with a token head's), `target_logprobs` its log; bits per byte follow exactly.
`forward` gives it for every id at once, the head's logits over the vocabulary: log-probabilities
(`LOGITS_ARE_LOGPROBS`), -inf for ids with no chunk. Chunks end with EOC, so no spelling is a
prefix of another and they sum to at most 1; the rest is the probability of spellings that are
no id, which bits per byte counts as lost, never renormalised away. They cost one decoder pass
per id and position, so training does not compute them (`LOGITS_IN_TRAINING`). Generation
(`sample_token`) spells a chunk byte by byte, restricted to the tokenizer's chunks and to valid
UTF-8: cheap, whatever the vocabulary's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stlm.batch import IGNORE_INDEX
from stlm.config.schema import ModelConfig
from stlm.data.chunks import EOC, N_INPUT_SYMBOLS, N_SYMBOLS, Utf8
from stlm.models.components.byte_transformer import ByteTransformer, ChunkTable, length_groups
from stlm.models.components.norms import build_norm
from stlm.models.output import HeadLoss
from stlm.models.registry import register

ROWS_PER_CHUNK = 8192  # chunks decoded at once when scoring
SYMBOLS_PER_CALL = 131072  # chunk symbols decoded at once for the logits of every id


@register("head", "byte_decoder")
class ByteDecoderHead(nn.Module):
    LOGITS_ARE_LOGPROBS = True  # forward: log p(id), summing to at most 1 (see the module docstring)
    LOGITS_IN_TRAINING = False  # one decoder pass per id and position: only when asked for

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.chunks = ChunkTable(vocab_size, cfg.byte_chunk_max)
        self.norm = build_norm(cfg)
        self.start = nn.Linear(cfg.d_model, cfg.byte_dim, bias=False)
        self.byte = nn.Embedding(N_INPUT_SYMBOLS, cfg.byte_dim)
        self.byte_position = nn.Embedding(cfg.byte_chunk_max + 1, cfg.byte_dim)
        self.decoder = ByteTransformer(cfg.byte_dim, cfg.byte_decoder_layers, cfg.byte_heads, causal=True)
        self.out = nn.Linear(cfg.byte_dim, N_SYMBOLS, bias=False)
        self._utf8: tuple[torch.Tensor, torch.Tensor] | None = None

    def symbol_logits(self, h: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """Logits (N, W + 1, N_SYMBOLS) of symbol j given the state h (N, d_model) and the chunk's
        symbols before j, `prefix` (N, W) (teacher forcing; position 0 sees h alone)."""
        s = self.start(self.norm(h))[:, None]  # conditions every position
        x = torch.cat([torch.zeros_like(s), self.byte(prefix)], dim=1) + s
        x = x + self.byte_position.weight[: x.shape[1]]
        return self.out(self.decoder(x))

    def chunk_nll(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-log p(chunk of targets[n] + EOC | h[n]) (N,) in float32, and whether every symbol was
        the argmax. Chunks of similar length are decoded together (less padding)."""
        nll = torch.zeros(targets.shape[0], dtype=torch.float32, device=h.device)
        hit = torch.zeros(targets.shape[0], dtype=torch.bool, device=h.device)
        for rows in length_groups(self.chunks.lengths[targets]):
            group_nll, group_hit = self._chunk_nll(h[rows], targets[rows])
            nll = nll.index_copy(0, rows, group_nll)
            hit[rows] = group_hit
        return nll, hit

    def _chunk_nll(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        symbols, lengths = self.chunks(targets)
        logits = self.symbol_logits(h, symbols).float()  # position j predicts symbol j
        want = F.pad(symbols, (0, 1)).scatter(1, lengths[:, None], EOC)
        real = torch.arange(want.shape[1], device=h.device) <= lengths[:, None]
        nll = F.cross_entropy(logits.transpose(1, 2), want, reduction="none")
        hit = (logits.argmax(-1) == want) | ~real
        return (nll * real).sum(1), hit.all(1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """log p(chunk of id + EOC | h) for every id (..., vocab) in float32, -inf where an id has no
        chunk; ids of similar chunk length are decoded together, SYMBOLS_PER_CALL symbols at a time."""
        flat = h.reshape(-1, h.shape[-1])
        out = torch.full((flat.shape[0], self.vocab_size), float("-inf"), dtype=torch.float32, device=h.device)
        lengths = self.chunks.lengths
        spelled = torch.nonzero(lengths > 0)[:, 0]
        for group in length_groups(lengths[spelled]):
            width = int(lengths[spelled[group]].max()) + 1  # symbols decoded per chunk
            for ids in spelled[group].split(max(1, SYMBOLS_PER_CALL // width)):
                per_call = max(1, SYMBOLS_PER_CALL // (width * len(ids)))  # positions decoded with them
                for start in range(0, flat.shape[0], per_call):
                    rows = flat[start : start + per_call]
                    nll, _ = self._chunk_nll(rows.repeat_interleave(len(ids), 0), ids.repeat(len(rows)))
                    out[start : start + len(rows), ids] = -nll.view(len(rows), len(ids))
        return out.view(*h.shape[:-1], self.vocab_size)

    def loss(self, h: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None = None,
             logits: torch.Tensor | None = None) -> HeadLoss:
        """Mean over scored positions of -log p(next chunk) (nats per token)."""
        scored = targets != IGNORE_INDEX
        if loss_mask is not None:
            scored = scored & loss_mask
        nll, _ = self.chunk_nll(h[scored], targets[scored])
        return HeadLoss(nll.sum() / scored.sum().clamp(min=1))

    def target_logprobs(self, h: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(chunk of each target + EOC | h) (N,) in float32, and whether it is the greedy
        spelling. Targets below 0 (padding) get an arbitrary value."""
        logp = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
        greedy = torch.empty(h.shape[0], dtype=torch.bool, device=h.device)
        for start in range(0, h.shape[0], ROWS_PER_CHUNK):
            rows = slice(start, start + ROWS_PER_CHUNK)
            nll, hit = self.chunk_nll(h[rows], targets[rows].clamp(min=0))
            logp[rows], greedy[rows] = -nll, hit
        return logp, greedy

    # ----------------------------------------------------------------------------- generation

    def _utf8_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N_STATES, vocab) whether each chunk is valid UTF-8 from each state, and its end state."""
        if self._utf8 is None or self._utf8[0].device != self.chunks.table.device:
            table, lengths = self.chunks.table, self.chunks.lengths
            ends = torch.stack([Utf8.run(table, lengths, s) for s in range(Utf8.N_STATES)])
            valid = (ends != Utf8.ERROR) & (lengths > 0)
            self._utf8 = (valid, ends)
        return self._utf8

    @torch.no_grad()
    def sample_token(self, h: torch.Tensor, history: bytes, sample, final: bool = False) -> int:
        """Spell the next chunk byte by byte from the state h (d_model,) and return its id.

        `sample(logits) -> index` draws one symbol (temperature, top-k, top-p). Each step may only
        extend the spelling towards a chunk of the tokenizer that is valid UTF-8 after `history`
        (the bytes so far), so every chunk has an id for the core's next step and the text stays
        valid UTF-8; with `final` the chunk must also end on a character boundary. Ids' chunks are
        distinct, so the spelling names one id.
        """
        valid, ends = self._utf8_tables()
        state = Utf8.state_after(history)
        alive = valid[state] & ((ends[state] == 0) if final else True)
        table, lengths = self.chunks.table, self.chunks.lengths
        prefix: list[int] = []
        for k in range(table.shape[1] + 1):
            logits = self.symbol_logits(h[None], torch.tensor([prefix], dtype=torch.long,
                                                              device=h.device).view(1, -1))[0, k]
            allowed = torch.zeros(N_SYMBOLS, dtype=torch.bool, device=h.device)
            longer = alive & (lengths > k)
            if k < table.shape[1]:
                allowed[table[longer, k]] = True
            if k > 0 and bool((alive & (lengths == k)).any()):
                allowed[EOC] = True
            symbol = sample(logits.float().masked_fill(~allowed, float("-inf")))
            if symbol == EOC:
                return int(torch.nonzero(alive & (lengths == k))[0])
            prefix.append(symbol)
            alive = longer & (table[:, min(k, table.shape[1] - 1)] == symbol)
        raise AssertionError("a chunk longer than the table")  # unreachable: EOC is forced at the width
