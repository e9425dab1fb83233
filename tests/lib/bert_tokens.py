"""bert_tokens.py - the token task of the BERT-like fixture
(tests/fixtures/transformers/bert_*.onnx): Fashion-MNIST images as
sentences of row tokens.  numpy only, deterministic: the fixture script
(tests/make-bert-fixture.py) trains on it, and tests/tokens.test writes
its npy inputs with it from the IDX files at test time, so no token
arrays are committed.

An image's 28 rows each become one token: the row is cut into 4
segments of 7 pixels, each segment's mean pixel (uint8 scale) is
quantised to 3 levels (< 40, < 128, >= 128), and the 4 levels make a
code 0..80 (base 3, first segment most significant); the token is
code + 2.  Blank rows (code 0) before the first and after the last
non-blank row are left out, so sentences have 1 to 28 row tokens; blank
rows between them stay (token 2).  A sentence is [CLS] (token 1), its
row tokens, then [PAD] (token 0) up to SEQ_LEN = 29.

  input_ids       [n, 29] token ids, in [0, VOCAB)
  attention_mask  [n, 29] 1 for [CLS] and the row tokens, 0 for padding
  token_type_ids  [n, 29] 1 for a row token from the image's lower half
                  (row >= 14), else 0 ([CLS] and padding 0)
"""

import numpy as np

SEQ_LEN = 29
PAD, CLS = 0, 1
LEVELS = 3
SEGMENTS = 4
VOCAB = 2 + LEVELS ** SEGMENTS      # 83
TYPES = 2


def row_codes(images):
    """uint8 images [n, 28, 28] -> row codes [n, 28] (int64, 0..80)."""
    x = np.asarray(images, dtype=np.uint8).reshape(-1, 28, SEGMENTS, 7)
    mean = x.astype(np.float64).mean(axis=3)
    q = (mean >= 40).astype(np.int64) + (mean >= 128).astype(np.int64)
    code = np.zeros(q.shape[:2], dtype=np.int64)
    for s in range(SEGMENTS):
        code = code * LEVELS + q[:, :, s]
    return code


def tokenize(images):
    """uint8 images [n, 28, 28] -> (input_ids, attention_mask,
    token_type_ids), each int64 [n, SEQ_LEN]."""
    code = row_codes(images)
    n = code.shape[0]
    ids = np.full((n, SEQ_LEN), PAD, dtype=np.int64)
    mask = np.zeros((n, SEQ_LEN), dtype=np.int64)
    types = np.zeros((n, SEQ_LEN), dtype=np.int64)
    ids[:, 0] = CLS
    mask[:, 0] = 1
    for i in range(n):
        rows = np.nonzero(code[i])[0]
        if len(rows) == 0:
            continue
        first, last = int(rows[0]), int(rows[-1])
        k = last - first + 1
        ids[i, 1:1 + k] = code[i, first:last + 1] + 2
        mask[i, 1:1 + k] = 1
        types[i, 1:1 + k] = np.arange(first, last + 1) >= 14
    return ids, mask, types


RECIPE = ("Fashion-MNIST images as sentences of row tokens "
          "(tests/lib/bert_tokens.py): each of the 28 rows cut into 4 "
          "segments of 7 pixels, each segment's mean pixel quantised to 3 "
          "levels (< 40, < 128, >= 128) and read as a base-3 code 0..80, "
          "token = code + 2; leading and trailing blank rows left out; "
          "[CLS] = 1 first, [PAD] = 0 up to 29 tokens; attention_mask 1 on "
          "[CLS] and row tokens; token_type_ids 1 on rows >= 14")
