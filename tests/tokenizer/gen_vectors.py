#!/usr/bin/env python3
"""Regenerates tests/tokenizer/vectors/*.jsonl: reference ids for tricky text (mixed scripts, digit
runs, whitespace runs, contractions in caps, emoji ZWJ sequences, added tokens next to text,
invalid-looking Unicode) plus the 55 shared test strings, from the reference implementations:

  - HF `tokenizers` (Rust, PyPI) for the tokenizer.json folders,
  - `sentencepiece` (PyPI) for tokenizer.model folders,
  - `jinja2` rendering of the chat templates for the ChatML chat vectors.

Pinned in tests/requirements.txt. Usage (from the repository root):
  python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt
  .venv/bin/python tests/tokenizer/gen_vectors.py [assets-dir (default tests/assets) [output-dir]]

Each line: {"text", "add_special_tokens", "ids", "decoded", "decoded_skip"}; decoded is
decode(ids) with special tokens kept, decoded_skip with them skipped (SentencePiece: the plain
decode, no special tokens are in these ids)."""
import json
import os
import sys

import jinja2
import sentencepiece as spm
import tokenizers
from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, '..', 'assets')
TOK = os.path.join(ASSETS, 'tokenizers')
OUT = os.path.abspath(sys.argv[2]) if len(sys.argv) > 2 else os.path.join(HERE, 'vectors')

TRICKY = [
    # mixed scripts
    "Hello世界こんにちは안녕Привет مرحبا 🌍!",
    "abc日本語def中文ghi",
    "ΑΒΓ αβγ ß ẞ İstanbul ıi ǅ",
    "สวัสดีครับ ภาษาไทย",
    "हिन्दी में लिखा गया पाठ",
    "Ελληνικά και English και 中文",
    "ꦗꦮ ᓀᐦᐃᔭᐍᐏᐣ ትግርኛ",
    # long digit runs
    "1234567890123456789012345678901234567890",
    "3.141592653589793238462643383279502884197169399375105820974944",
    "0000000000 00000 000",
    "٠١٢٣٤٥٦٧٨٩ ۱۲۳ १२३ ①②③ ⅷ ½¾",
    "v1.2.3-rc4+build.567 2024-01-01T00:00:00Z 0x7fffffff 1e+308",
    # whitespace runs with newlines
    "a  \n  b",
    "\n\n\n",
    " \n \n ",
    "x\t\t\n\ny",
    "   \r\n\r\n   z",
    "end   ",
    "   ",
    "a \n",
    "  \u00a0 \u3000 x",
    "a\u2028b\u2029c\u0085d",
    "x\u180ey\u180e\u180ez",
    "\u2003\u2003em spaces\u2009thin",
    "tab\there\t\t\tand\n\tnext",
    "line\n \n  \n   \nend",
    # contractions in caps and mixed case
    "I'M YOU'RE WE'VE THEY'LL HE'D IT'S DON'T",
    "It'S We'Re THEY'Ll",
    "'s't're've'm'll'd",
    "o'clock rock'n'roll ma'am y'all",
    "'ſ 'K test'\u017f",
    "’s curly apostrophe isn’t matched",
    # emoji
    "👨‍👩‍👧‍👦👩🏽‍💻🏳️‍🌈🧑🏿‍🤝‍🧑🏻",
    "🇺🇸🇨🇳🇯🇵 flags",
    "1️⃣#️⃣*️⃣ keycaps",
    "👍🏻👍🏼👍🏽👍🏾👍🏿",
    "emoji😀inside😀words",
    # added tokens adjacent to text
    "hello<|im_end|>world",
    "<|im_start|><|im_end|>",
    "<|im_start|>system\nYou<|im_end|>",
    "<|endoftext|><|endoftext|>",
    "x<|im_start|>",
    "<|im_start",
    "<|im_end|>\n\n",
    " <|im_end|> ",
    "<tool_call>{\"a\":1}</tool_call>",
    "<|fim_prefix|>def f():<|fim_suffix|><|fim_middle|>",
    "[CLS]hello[SEP]",
    "[cls] lower [Mask]",
    "a[MASK]b",
    "<s>hi</s>",
    # normalisation
    "e\u0301 a\u0308 n\u0303 \u212b \u2126 \u1100\u1161\u11a8",
    "Å vs Å vs Å",
    "ﬁ ﬂ ﬃ ㎏ ™ ①",
    "ＦＵＬＬ　ｗｉｄｔｈ　１２３",
    # control and special characters
    "a\u0000b",
    "a\u0007b\u001bc",
    "\ufeffBOM at start",
    "replacement \ufffd char",
    "a\u200db\u200cc",
    "\u00ad\u00adsoft",
    # code and punctuation runs
    "    def f(x):\n        return x ** 2\n\n\n",
    "if (a&&b||!c) { x->y[i] <<= 2; }",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "________ ======== -------- ........ ~~~~~~~~",
    "Qwen2.5-7B-Instruct GPT-4o C++20 x86_64 e.g. U.S.A.",
    "a" * 100,
    "b" * 101,
    "supercalifragilisticexpialidocious" * 4,
]


def shared_strings():
    with open(os.path.join(ASSETS, 'tokenizer-vectors', 'tools', 'test-strings.json'), encoding='utf-8') as f:
        return json.load(f)


def write(name, lines):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + '.jsonl'), 'w', encoding='utf-8', newline='\n') as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + '\n')
    print(f'{name}: {len(lines)} vectors')


def hf_vectors(tok, texts, add_special):
    out = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=add_special).ids
        out.append({'text': t, 'add_special_tokens': add_special, 'ids': ids,
                    'decoded': tok.decode(ids, skip_special_tokens=False),
                    'decoded_skip': tok.decode(ids, skip_special_tokens=True)})
    return out


def qwen2_reference():
    """The qwen2 folder (vocab.json + merges.txt, 3 added tokens in its tokenizer_config.json) as
    a fast tokenizer: the Qwen2.5 pipeline with only those added tokens."""
    with open(os.path.join(TOK, 'qwen2.5', 'tokenizer.json'), encoding='utf-8') as f:
        j = json.load(f)
    with open(os.path.join(TOK, 'qwen2', 'tokenizer_config.json'), encoding='utf-8') as f:
        cfg = json.load(f)
    keep = {int(k) for k in cfg['added_tokens_decoder']}
    j['added_tokens'] = [a for a in j['added_tokens'] if a['id'] in keep]
    return Tokenizer.from_str(json.dumps(j))


QWEN2_INSTRUCT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"},
     {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Translate: 你好"}, {"role": "assistant", "content": "Hello"},
     {"role": "user", "content": "And 谢谢?"}, {"role": "assistant", "content": "Thank you."}],
    [{"role": "user", "content": "  spaced  "}, {"role": "assistant", "content": "\nleading newline\n"}],
    [{"role": "user", "content": "emoji 👨‍👩‍👧 and <|im_end|> inside"},
     {"role": "assistant", "content": "I'LL SHOUT 123456"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
]


def chat_vectors(tok, template, label):
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=['jinja2.ext.loopcontrols'])
    env.filters['tojson'] = lambda x, **kw: json.dumps(x, ensure_ascii=False)
    tmpl = env.from_string(template)
    out = []
    for messages in CONVERSATIONS:
        for gen in (False, True):
            text = tmpl.render(messages=messages, add_generation_prompt=gen, tools=None)
            out.append({'template': label, 'messages': messages, 'add_generation_prompt': gen,
                        'text': text, 'ids': tok.encode(text, add_special_tokens=False).ids})
    return out


TINY_CORPUS = [
    "the quick brown fox jumps over the lazy dog", "hello world, hello there", "It's a test; isn't it?",
    "numbers 123 456 7890", "whitespace   runs\n\nand lines", "café naïve ﬁ", "中文 文本 测试",
] * 20

TINY_TEXTS = [
    "hello world", "the <mask> fox", "the<mask>fox", "a  <mask>  b", "[X]  next", "[X]", "x[X] \n y",
    "a word here", "password words word.", "_word word_", "wordword", "héllo hello HÉLLO",
    "he\u0301llo", "ﬁne ﬁ", "<|sp|>text<|end|>", "<|sp|><|sp|>", "  leading", "The Quick",
    "It's", "lazy dogs", "🦊 fox", "", " ", "\n",
]


def tiny_tokenizers():
    """Two small byte-level BPE tokenizer.json files (trained here, committed) that exercise
    what the real ones do not: added-token flags (lstrip, rstrip, single_word, normalized,
    non-special), NFKC, TemplateProcessing, ByteLevel add_prefix_space + use_regex, ignore_merges."""
    from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers, Regex
    out = {}
    for name in ('tiny-split', 'tiny-gpt2'):
        tok = Tokenizer(models.BPE(ignore_merges=(name == 'tiny-gpt2')))
        if name == 'tiny-split':
            tok.normalizer = normalizers.NFKC()
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(r"(?i:'s|'t)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
                                     behavior='isolated'),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=420, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(TINY_CORPUS, trainer)
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True),
                                AddedToken("[X]", rstrip=True, special=True),
                                AddedToken("<|sp|>", special=True), AddedToken("<|end|>", special=True)])
        tok.add_tokens([AddedToken("word", single_word=True, normalized=False),
                        AddedToken("héllo", normalized=True)])
        if name == 'tiny-split':
            sp, end = tok.token_to_id("<|sp|>"), tok.token_to_id("<|end|>")
            tok.post_processor = processors.TemplateProcessing(
                single="<|sp|> $A <|end|>", special_tokens=[("<|sp|>", sp), ("<|end|>", end)])
        out[name] = tok
    return out


def main():
    for name, tok in tiny_tokenizers().items():
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        tok.save(os.path.join(OUT, name, 'tokenizer.json'))
        write(name, hf_vectors(tok, TINY_TEXTS, True) + hf_vectors(tok, TINY_TEXTS, False))
    texts = shared_strings() + TRICKY
    q25 = Tokenizer.from_file(os.path.join(TOK, 'qwen2.5', 'tokenizer.json'))
    write('qwen2.5', hf_vectors(q25, texts, True))
    write('qwen2', hf_vectors(qwen2_reference(), texts, True))
    for name in ('bert-base-uncased', 'bert-base-chinese'):
        tok = Tokenizer.from_file(os.path.join(TOK, name, 'tokenizer.json'))
        write(name, hf_vectors(tok, texts, True) + hf_vectors(tok, texts, False))
    for name in ('llama2-spm', 'baichuan-7b'):
        sp = spm.SentencePieceProcessor(model_file=os.path.join(TOK, name, 'tokenizer.model'))
        lines = []
        for t in texts:
            ids = sp.encode(t)
            lines.append({'text': t, 'add_special_tokens': False, 'ids': ids,
                          'decoded': sp.decode(ids), 'decoded_skip': sp.decode(ids)})
        write(name, lines)
    with open(os.path.join(TOK, 'qwen2.5', 'tokenizer_config.json'), encoding='utf-8') as f:
        q25_template = json.load(f)['chat_template']
    write('chat-chatml', chat_vectors(q25, q25_template, 'qwen2.5') +
          chat_vectors(q25, QWEN2_INSTRUCT_TEMPLATE, 'qwen2-instruct'))
    print(f'tokenizers {tokenizers.__version__}, sentencepiece {spm.__version__}, jinja2 {jinja2.__version__}')


if __name__ == '__main__':
    main()
