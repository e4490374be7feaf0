#!/usr/bin/env python3
"""Regenerates the golden numbers in tests/text/TokenizerTest.cpp and SamplerTest.cpp.

    pip install sentencepiece numpy
    python3 tests/text/make_golden.py [MODELS_DIR]   # default: ../shared/models

Token ids for .model files come from the sentencepiece package. Token ids for llama2.c
tokenizer.bin files and the sampler's choices come from the Python ports of llama2.c's
run.c below (encode(), and sample() with its xorshift coin), written to follow the C code
line by line, with float32 arithmetic where the C code uses float. The script prints C++
initializers to paste into the tests.
"""
import math
import os
import struct
import sys

import numpy as np
import sentencepiece as spm

f32 = np.float32

# ---------------------------------------------------------------------------
# llama2.c tokenizer.bin and encode()


def read_llama2c_tokenizer(path):
    data = open(path, "rb").read()
    (max_token_length,) = struct.unpack_from("<i", data, 0)
    offset, pieces, scores = 4, [], []
    while offset < len(data):
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        pieces.append(data[offset:offset + length])
        scores.append(score)  # a float32 value, held exactly by a Python float
        offset += length
    assert len(set(pieces)) == len(pieces), "duplicate pieces: llama2.c's bsearch would be ambiguous"
    return pieces, scores


def llama2c_encode(pieces, scores, text, bos):
    """run.c encode(t, text, bos, eos=0): text is bytes."""
    lookup = {piece: i for i, piece in enumerate(pieces)}
    tokens = [1] if bos else []
    if text:  # add_dummy_prefix, only for non-empty text
        tokens.append(lookup[b" "])
    buf = b""
    for i, c in enumerate(text):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        next_byte = text[i + 1] if i + 1 < len(text) else 0
        if (next_byte & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:  # byte fallback: <0xXX> has id XX + 3
            tokens.extend(b + 3 for b in buf)
        buf = b""
    while True:  # merge the best-scoring adjacent pair, leftmost on ties
        best_score, best_id, best_idx = float(f32(-1e10)), -1, -1
        for i in range(len(tokens) - 1):
            merged = lookup.get(pieces[tokens[i]] + pieces[tokens[i + 1]], -1)
            if merged != -1 and scores[merged] > best_score:
                best_score, best_id, best_idx = scores[merged], merged, i
        if best_idx == -1:
            break
        tokens[best_idx] = best_id
        del tokens[best_idx + 1]
    return tokens


# ---------------------------------------------------------------------------
# llama2.c sampler


class Llama2cSampler:
    def __init__(self, vocab_size, temperature, topp, seed):
        self.n, self.temperature, self.topp, self.state = vocab_size, f32(temperature), f32(topp), seed

    def random_f32(self):
        s = self.state
        s ^= s >> 12
        s ^= (s << 25) & 0xFFFFFFFFFFFFFFFF
        s ^= s >> 27
        self.state = s
        u32 = ((s * 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF) >> 32
        return f32(u32 >> 8) / f32(16777216.0)

    def sample(self, logits):
        x = [f32(v) for v in logits]
        if self.temperature == 0:
            return max(range(self.n), key=lambda i: (x[i], -i))
        x = [v / self.temperature for v in x]
        max_val = max(x)
        total = f32(0)
        for i in range(self.n):
            # expf(), correctly rounded in glibc up to rare half-ulp cases
            x[i] = f32(math.exp(float(x[i] - max_val)))
            total += x[i]
        x = [v / total for v in x]
        coin = self.random_f32()
        if self.topp <= 0 or self.topp >= 1:
            cdf = f32(0)
            for i in range(self.n):
                cdf += x[i]
                if coin < cdf:
                    return i
            return self.n - 1
        cutoff = (f32(1) - self.topp) / f32(self.n - 1)
        # qsort by descending probability; llamac breaks ties by index, as a stable sort would
        candidates = sorted((i for i in range(self.n) if x[i] >= cutoff), key=lambda i: -x[i])
        if not candidates:  # undefined in llama2.c (topp < 1/n); llamac takes the argmax
            return max(range(self.n), key=lambda i: (x[i], -i))
        cumulative, last = f32(0), len(candidates) - 1
        for k, i in enumerate(candidates):
            cumulative += x[i]
            if cumulative > self.topp:
                last = k
                break
        r = coin * cumulative
        cdf = f32(0)
        for i in candidates[:last + 1]:
            cdf += x[i]
            if r < cdf:
                return i
        return candidates[last]


def test_logits(n):
    """The same exact float32 values as testLogits() in SamplerTest.cpp."""
    return [f32(((i * 37) % 23 - 11) / 4.0) for i in range(n)]


# ---------------------------------------------------------------------------
# Printing C++

TEXTS = [
    "",
    "Once upon a time",
    "Lily saw a big, red ball.",
    " leading space",
    "trailing space ",
    "  two  spaces  ",
    "line one\nline two\n\n",
    "café",
    "日本",
    "llama 🦙!",
    "I have 42 cats.",
    "Ooooh",  # equal-score merges: llama2.c takes the leftmost pair
    "hmmm",
]


def cpp_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def cpp_ids(ids):
    return "{" + ", ".join(str(i) for i in ids) + "}"


def print_table(name, encode):
    print(f"const GoldenEncoding {name}[] = {{")
    for text in TEXTS:
        print(f"    {{{cpp_string(text)}, {cpp_ids(encode(text))}}},")
    print("};")


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../../shared/models")
    encoders = {}
    for name in ["tok512.model", "tokenizer.model"]:
        sp = spm.SentencePieceProcessor(model_file=os.path.join(models, name))
        encoders[name] = lambda text, sp=sp: sp.encode(text)
    for name in ["tok512.bin", "tokenizer.bin", "aidreams260K_tok512.bin"]:
        pieces, scores = read_llama2c_tokenizer(os.path.join(models, name))
        encoders[name] = lambda text, p=pieces, s=scores: llama2c_encode(p, s, text.encode(), False)

    # The port should agree with sentencepiece wherever sentencepiece's normalizer does not
    # rewrite the text (tok512.model collapses runs of spaces; both add the dummy prefix).
    for model, binary in [("tok512.model", "tok512.bin"), ("tokenizer.model", "tokenizer.bin")]:
        for text in TEXTS:
            a, b = encoders[model](text), encoders[binary](text)
            if a != b:
                print(f"// note: {model} and {binary} differ on {cpp_string(text)}: {a} vs {b}")

    for name, table in [("tok512.model", "kTok512Model"), ("tok512.bin", "kTok512Bin"),
                        ("tokenizer.model", "kLlama2Model"), ("tokenizer.bin", "kLlama2Bin"),
                        ("aidreams260K_tok512.bin", "kAidreamsBin")]:
        print(f"// {name}")
        print_table(table, encoders[name])
        print()

    print("const GoldenSampling kGoldenSampling[] = {")
    for vocab, temperature, topp, seed in [(32, 1.0, 0.9, 42), (32, 0.8, 1.0, 42), (32, 1.3, 0.5, 1337),
                                           (32, 0.5, 0.0, 7), (512, 1.0, 0.9, 2024), (512, 2.0, 0.95, 99)]:
        sampler = Llama2cSampler(vocab, temperature, topp, seed)
        picks = [sampler.sample(test_logits(vocab)) for _ in range(24)]
        print(f"    {{{vocab}, {temperature}f, {topp}f, {seed}, {cpp_ids(picks)}}},")
    print("};")


if __name__ == "__main__":
    main()
