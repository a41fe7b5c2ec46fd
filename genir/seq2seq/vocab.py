"""The decoder vocabulary every genir seq2seq model speaks, and text written in it.

genir's decoders share one convention: output token ``0`` (:data:`PAD`) is padding and the
decoder start, ``1`` (:data:`EOS`) ends a sequence, and a vocabulary's own tokens start at ``2``
(:data:`FIRST_TOKEN`). Docid schemes (:mod:`genir.dsi.docids`) number their tokens from there;
a decoder that writes text
(a query generator trained in genir, or elaborative docids) keeps that convention by shifting
every tokenizer id by two: output token ``t`` is tokenizer id ``t - 2``. Any Hugging Face
tokenizer works (BERT WordPiece, T5 SentencePiece): its own special tokens are never written
(the tokenizer's pad or eos would otherwise collide with the decoder's meaning of 0 and 1).
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerBase

from genir.errors import GenirError

PAD = 0
EOS = 1
FIRST_TOKEN = 2
#: The decoder's first input token (as in T5: the pad token).
DECODER_START = PAD
SPECIAL_TOKEN_NAMES = ["<pad>", "<eos>"]


def load_tokenizer(tokenizer: PreTrainedTokenizerBase | str) -> PreTrainedTokenizerBase:
    """A tokenizer object, loaded by name or path if given as a string.

    ``all-MiniLM-L6-v2`` resolves to the local copy (:func:`genir.encoding.encoder.resolve_model`).

    Raises:
        GenirError: the name or path is not a tokenizer.
    """
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    from transformers import AutoTokenizer

    from genir.encoding.encoder import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(tokenizer))
    except (OSError, ValueError) as e:
        raise GenirError(f"cannot load tokenizer {tokenizer!r}: {e}") from None


class TextVocab:
    """Maps text to output tokens ``tokenizer id + 2`` followed by eos, and back.

    Args:
        tokenizer: a Hugging Face tokenizer, or its name/path.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase | str) -> None:
        self.tokenizer = load_tokenizer(tokenizer)

    @property
    def size(self) -> int:
        """Output vocabulary size: pad, eos, then one token per tokenizer id (added ones too)."""
        return len(self.tokenizer) + FIRST_TOKEN

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """At most ``max_tokens`` text tokens (no special tokens), then eos.

        Raises:
            GenirError: ``max_tokens`` is below 1.
        """
        if max_tokens < 1:
            raise GenirError(f"max_tokens must be at least 1, got {max_tokens}")
        ids = self.tokenizer.encode(text, add_special_tokens=False, truncation=True, max_length=max_tokens)
        return [FIRST_TOKEN + i for i in ids] + [EOS]

    def decode(self, tokens: Iterable[int]) -> str:
        """The text of output tokens, read up to the first eos; pad (a decoder start) is skipped."""
        ids: list[int] = []
        for token in tokens:
            token = int(token)
            if token == EOS:
                break
            if token != PAD:
                ids.append(token - FIRST_TOKEN)
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def token_names(self) -> list[str]:
        """A readable name for each output id ``0..size-1``: pad, eos, then the tokenizer's tokens."""
        return [*SPECIAL_TOKEN_NAMES, *self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))]
