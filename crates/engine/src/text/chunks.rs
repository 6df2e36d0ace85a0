//! AUTOMATIC1111's chunking of a weighted prompt for CLIP (its
//! `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line`, described at
//! <https://github.com/AUTOMATIC1111/stable-diffusion-webui/wiki/Features#infinite-prompt-length>).
//!
//! Each span is tokenised on its own and its tokens carry its weight. The
//! tokens fill chunks of 75 (the encoder's 77 positions less the start and
//! end tokens): when a chunk is full, the next token starts a new one,
//! except that if a comma was among the chunk's last 20 tokens, the tokens
//! after that comma move to the new chunk (A1111's `comma_padding_backtrack`
//! at its default, 20), so a phrase is not cut in half. `BREAK` closes the
//! current chunk, padded, even when it is empty (so `BREAK a` is two chunks,
//! and `a BREAK` one). A finished chunk is `start, tokens…, end, pad…`
//! (pad after the first end token, as diffusers pads), 77 ids with weight 1
//! on the specials and the padding. An empty prompt is one chunk.

/// Chunks beyond the first this many are dropped with a warning (8 × 75 =
/// 600 tokens; the UNet's cross-attention grows with every chunk).
pub(crate) const MAX_CHUNKS: usize = 8;

/// A1111's `comma_padding_backtrack` default.
const COMMA_BACKTRACK: usize = 20;

/// One tokenised span, or a break.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// Token ids (no specials) and their weight.
    Span(Vec<u32>, f32),
    /// `BREAK`.
    Break,
}

/// One encoder input row: ids, weights and attention mask of equal length.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chunk {
    /// Token ids, the encoder's full length.
    pub ids: Vec<u32>,
    /// Per-token weight.
    pub weights: Vec<f32>,
    /// 1 for real tokens (specials included), 0 for padding.
    pub mask: Vec<u32>,
}

impl Chunk {
    /// Whether every weight is 1 (the chunk's embeddings are used as encoded).
    pub(crate) fn is_plain(&self) -> bool {
        self.weights.iter().all(|&w| w == 1.0)
    }
}

/// The special tokens and chunk size of a CLIP tokenizer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Specials {
    /// Start of text.
    pub bos: u32,
    /// End of text.
    pub eos: u32,
    /// Padding after the end token.
    pub pad: u32,
    /// `,</w>`, if in the vocabulary.
    pub comma: Option<u32>,
    /// Prompt tokens per chunk: the encoder's length less 2 (75).
    pub chunk_len: usize,
}

impl Specials {
    /// `start, tokens…, end, pad…` with weight 1 on all but the tokens.
    fn finish(&self, tokens: Vec<u32>, weights: Vec<f32>) -> Chunk {
        let pad = self.chunk_len - tokens.len();
        let mut ids = Vec::with_capacity(self.chunk_len + 2);
        ids.push(self.bos);
        ids.extend(tokens);
        ids.push(self.eos);
        ids.extend(std::iter::repeat_n(self.pad, pad));
        let mut w = Vec::with_capacity(self.chunk_len + 2);
        w.push(1.0);
        w.extend(weights);
        w.extend(std::iter::repeat_n(1.0, pad + 1));
        let real = self.chunk_len + 2 - pad;
        let mut mask = vec![1; real];
        mask.resize(self.chunk_len + 2, 0);
        Chunk {
            ids,
            weights: w,
            mask,
        }
    }

    /// The chunk of an empty prompt (A1111's padding chunk).
    pub(crate) fn empty(&self) -> Chunk {
        self.finish(Vec::new(), Vec::new())
    }

    /// Splits tokenised pieces into chunks (see the module docs).
    pub(crate) fn split(&self, pieces: &[Piece]) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut tokens: Vec<u32> = Vec::new();
        let mut weights: Vec<f32> = Vec::new();
        let mut last_comma: Option<usize> = None;
        for piece in pieces {
            let (ids, weight) = match piece {
                Piece::Break => {
                    chunks.push(
                        self.finish(std::mem::take(&mut tokens), std::mem::take(&mut weights)),
                    );
                    last_comma = None;
                    continue;
                }
                Piece::Span(ids, weight) => (ids, *weight),
            };
            for &token in ids {
                if Some(token) == self.comma {
                    last_comma = Some(tokens.len());
                } else if let Some(comma) = last_comma
                    && tokens.len() == self.chunk_len
                    && tokens.len() - comma <= COMMA_BACKTRACK
                {
                    let moved = tokens.split_off(comma + 1);
                    let moved_w = weights.split_off(comma + 1);
                    chunks.push(self.finish(
                        std::mem::replace(&mut tokens, moved),
                        std::mem::replace(&mut weights, moved_w),
                    ));
                    last_comma = None;
                }
                if tokens.len() == self.chunk_len {
                    chunks.push(
                        self.finish(std::mem::take(&mut tokens), std::mem::take(&mut weights)),
                    );
                    last_comma = None;
                }
                tokens.push(token);
                weights.push(weight);
            }
        }
        if !tokens.is_empty() || chunks.is_empty() {
            chunks.push(self.finish(tokens, weights));
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: Specials = Specials {
        bos: 100,
        eos: 101,
        pad: 0,
        comma: Some(9),
        chunk_len: 75,
    };

    /// The prompt tokens of a chunk (between the start and end tokens).
    fn body(c: &Chunk) -> Vec<u32> {
        let end = c.ids.iter().position(|&t| t == SP.eos).unwrap();
        c.ids[1..end].to_vec()
    }

    fn words(n: u32) -> Vec<u32> {
        (0..n).map(|i| 10 + i % 50).collect()
    }

    #[test]
    fn a_short_prompt_is_one_padded_chunk() {
        let c = SP.split(&[Piece::Span(vec![10, 11], 1.5)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].ids.len(), 77);
        assert_eq!(&c[0].ids[..5], &[100, 10, 11, 101, 0]);
        assert_eq!(&c[0].weights[..5], &[1.0, 1.5, 1.5, 1.0, 1.0]);
        assert_eq!(c[0].mask.iter().sum::<u32>(), 4);
    }

    #[test]
    fn an_empty_prompt_is_one_empty_chunk() {
        let c = SP.split(&[Piece::Span(vec![], 1.0)]);
        assert_eq!(c, vec![SP.empty()]);
        assert_eq!(&c[0].ids[..3], &[100, 101, 0]);
    }

    #[test]
    fn seventy_five_tokens_fit_and_the_seventy_sixth_opens_a_chunk() {
        let c = SP.split(&[Piece::Span(words(75), 1.0)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].ids[76], 101);
        let c = SP.split(&[Piece::Span(words(76), 1.0)]);
        assert_eq!(c.len(), 2);
        assert_eq!(body(&c[1]), vec![words(76)[75]]);
    }

    #[test]
    fn a_comma_in_the_last_twenty_tokens_moves_the_rest_to_the_next_chunk() {
        // Comma at index 60 of the chunk: 15 tokens from the end.
        let mut t = words(60);
        t.push(9);
        t.extend(words(30));
        let c = SP.split(&[Piece::Span(t.clone(), 1.0)]);
        assert_eq!(c.len(), 2);
        assert_eq!(body(&c[0]), t[..61].to_vec());
        assert_eq!(body(&c[1]), t[61..].to_vec());
        // Comma at index 50: 25 from the end, too far back; a plain cut.
        let mut t = words(50);
        t.push(9);
        t.extend(words(40));
        let c = SP.split(&[Piece::Span(t.clone(), 1.0)]);
        assert_eq!(body(&c[0]), t[..75].to_vec());
        assert_eq!(body(&c[1]), t[75..].to_vec());
    }

    #[test]
    fn moved_tokens_keep_their_weights() {
        let mut a = words(70);
        a.push(9);
        let c = SP.split(&[Piece::Span(a, 1.0), Piece::Span(words(10), 2.0)]);
        assert_eq!(c.len(), 2);
        // 71 tokens, then 4 of weight 2 fill the chunk; they move.
        assert_eq!(body(&c[0]).len(), 71);
        assert_eq!(
            &c[1].weights[..8],
            &[1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]
        );
        assert_eq!(body(&c[1]).len(), 10);
    }

    #[test]
    fn a_comma_as_the_seventy_sixth_token_just_opens_the_next_chunk() {
        let mut t = words(75);
        t.push(9);
        t.push(10);
        let c = SP.split(&[Piece::Span(t, 1.0)]);
        assert_eq!(body(&c[0]).len(), 75);
        assert_eq!(body(&c[1]), vec![9, 10]);
    }

    #[test]
    fn break_closes_the_chunk_even_when_empty_but_not_at_the_end() {
        let c = SP.split(&[
            Piece::Span(vec![10], 1.0),
            Piece::Break,
            Piece::Span(vec![11], 1.0),
        ]);
        assert_eq!(
            c.iter().map(body).collect::<Vec<_>>(),
            vec![vec![10], vec![11]]
        );
        let c = SP.split(&[
            Piece::Span(vec![10], 1.0),
            Piece::Break,
            Piece::Span(vec![], 1.0),
        ]);
        assert_eq!(c.len(), 1);
        let c = SP.split(&[
            Piece::Span(vec![], 1.0),
            Piece::Break,
            Piece::Span(vec![11], 1.0),
        ]);
        assert_eq!(
            c.iter().map(body).collect::<Vec<_>>(),
            vec![vec![], vec![11]]
        );
    }
}
