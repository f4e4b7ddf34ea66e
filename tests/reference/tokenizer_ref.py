#!/usr/bin/env python3
"""Independent tokenizer reference: HF `tokenizers` rebuilt from a GGUF's vocabulary and merges.

The C++ tokenizer (engine/tokenizer/) is compared against this, document by document, in
tests/golden/tokenizer_golden_test.cpp. Only the GGUF metadata is shared; the pre-tokenizer is
the HF configuration that `tokenizer.ggml.pre` names, so the regexes run on HF's own engine.

Library use:   ref = load("model.gguf"); ref.encode("text") -> list[int] (no BOS/EOS added)
Command line:  python tokenizer_ref.py --model M.gguf --corpus tokenizer_corpus.txt --out REF
The corpus holds documents separated by lines containing only "===="; REF is a text file:
    # comment lines
    doc <index>
    text <UTF-8 bytes of the document, lowercase hex>
    special <ids with special-token text parsed into special tokens>
    plain <ids with special-token text encoded as ordinary text>
    decoded <HF decode of the special ids, hex: the text less any bytes the vocabulary lacks>
followed, when the model has a chat template and jinja2 is installed, by that template rendered
with Jinja (as HF apply_chat_template does, with an empty bos_token) for a few conversations:
    chat <index> <add_generation_prompt 0|1>
    message <role> <content, hex>          (one line per message)
    rendered <prompt, hex>
"""
import argparse
import sys

import gguf
import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

# GGUF tokenizer.ggml.token_type values.
TOKEN_TYPE_UNKNOWN = 2
TOKEN_TYPE_CONTROL = 3
TOKEN_TYPE_USER_DEFINED = 4

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")


def _byte_level(use_regex):
    return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=use_regex)


def _split_then_bytes(regex):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        _byte_level(False),
    ])


# tokenizer.ggml.pre -> (HF pre-tokenizer factory, BPE ignore_merges), as in the models'
# tokenizer.json files (SmolLM2: Digits(individual_digits) + ByteLevel; Llama-3: Split + ByteLevel).
PRE_TOKENIZERS = {
    "default": (lambda: _byte_level(True), False),
    "gpt2": (lambda: _byte_level(True), False),
    "gpt-2": (lambda: _byte_level(True), False),
    "smollm": (lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), _byte_level(True)]), False),
    "starcoder": (lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), _byte_level(True)]), False),
    "llama3": (lambda: _split_then_bytes(LLAMA3_REGEX), True),
    "llama-bpe": (lambda: _split_then_bytes(LLAMA3_REGEX), True),
    "qwen2": (lambda: _split_then_bytes(QWEN2_REGEX), False),
}


def _field(reader, key, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


class ReferenceTokenizer:
    """A byte-level BPE tokenizer equivalent to the GGUF's, running on HF `tokenizers`."""

    def __init__(self, gguf_path):
        reader = gguf.GGUFReader(gguf_path)
        model = _field(reader, "tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"reference supports byte-level BPE ('gpt2') only, not {model!r}")
        self.pre = _field(reader, "tokenizer.ggml.pre", "default")
        if self.pre not in PRE_TOKENIZERS:
            raise ValueError(f"no reference configuration for pre-tokenizer {self.pre!r}")
        tokens = _field(reader, "tokenizer.ggml.tokens")
        types = _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens))
        merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
        make_pre, ignore_merges = PRE_TOKENIZERS[self.pre]

        vocab = {text: i for i, text in enumerate(tokens)}
        self.tokenizer = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
        self.tokenizer.pre_tokenizer = make_pre()
        self.tokenizer.decoder = decoders.ByteLevel()
        special = [AddedToken(tokens[i], special=True, normalized=False)
                   for i, t in enumerate(types) if t in (TOKEN_TYPE_CONTROL, TOKEN_TYPE_UNKNOWN)]
        user = [AddedToken(tokens[i], special=False, normalized=False)
                for i, t in enumerate(types) if t == TOKEN_TYPE_USER_DEFINED]
        self.tokenizer.add_special_tokens(special)
        self.tokenizer.add_tokens(user)
        self.chat_template = _field(reader, "tokenizer.chat_template", "")

    def encode(self, text, parse_special=True):
        """Ids of `text`, no BOS/EOS. parse_special=False encodes special-token text as text."""
        self.tokenizer.encode_special_tokens = not parse_special
        try:
            return self.tokenizer.encode(text, add_special_tokens=False).ids
        finally:
            self.tokenizer.encode_special_tokens = False

    def decode(self, ids):
        return self.tokenizer.decode(ids, skip_special_tokens=False)


# Conversations rendered with the model's chat template: a default system message appears only
# when the first message is not a system message.
CHAT_CONVERSATIONS = [
    ([("user", "Hi there!")], True),
    ([("system", "Be brief."), ("user", "What is 2+2?"), ("assistant", "4"),
      ("user", "And 3+3?")], True),
    ([("user", "Hello"), ("assistant", "Hello! How can I help?")], False),
    ([("user", "  spaced  \n")], True),
]


def render_chat_template(template, messages, add_generation_prompt):
    """The prompt HF apply_chat_template renders, with bos_token written as ''."""
    import jinja2.sandbox  # optional: only the chat records need it

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=[{"role": r, "content": c} for r, c in messages],
        add_generation_prompt=add_generation_prompt, bos_token="", eos_token="")


def _have_jinja2():
    try:
        import jinja2.sandbox  # noqa: F401
    except ImportError:
        return False
    return True


def load(gguf_path):
    return ReferenceTokenizer(gguf_path)


def read_corpus(path):
    """Documents of a corpus file: the text between lines that contain only '===='."""
    with open(path, "r", encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline ends the last line, it is not document text
    docs, current = [], []
    for line in lines:
        if line == "====":
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    return docs


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="GGUF file")
    parser.add_argument("--corpus", required=True, help="documents separated by '====' lines")
    parser.add_argument("--out", required=True, help="reference ids file to write")
    args = parser.parse_args(argv)

    ref = load(args.model)
    docs = read_corpus(args.corpus)
    n_tokens = 0
    with open(args.out, "w", encoding="ascii", newline="\n") as out:
        out.write(f"# edgeinf tokenizer reference; tokenizers {tokenizers.__version__}, "
                  f"pre-tokenizer {ref.pre}, {len(docs)} documents\n")
        for index, doc in enumerate(docs):
            special = ref.encode(doc, parse_special=True)
            plain = ref.encode(doc, parse_special=False)
            n_tokens += len(special)
            out.write(f"doc {index}\n")
            out.write(f"text {doc.encode('utf-8').hex()}\n")
            out.write("special " + " ".join(map(str, special)) + "\n")
            out.write("plain " + " ".join(map(str, plain)) + "\n")
            out.write(f"decoded {ref.decode(special).encode('utf-8').hex()}\n")
        if ref.chat_template and not _have_jinja2():
            raise SystemExit("jinja2 is not installed: the model's chat template cannot be rendered "
                             "(scripts/setup installs it)")
        if ref.chat_template:
            for index, (messages, add_generation_prompt) in enumerate(CHAT_CONVERSATIONS):
                out.write(f"chat {index} {int(add_generation_prompt)}\n")
                for role, content in messages:
                    out.write(f"message {role} {content.encode('utf-8').hex()}\n")
                rendered = render_chat_template(ref.chat_template, messages, add_generation_prompt)
                out.write(f"rendered {rendered.encode('utf-8').hex()}\n")
    print(f"wrote {len(docs)} documents, {n_tokens} tokens to {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
