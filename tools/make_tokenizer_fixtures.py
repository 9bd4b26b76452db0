#!/usr/bin/env python3
"""Make the tokenizer test fixtures under tests/fixtures/tokenizers/ with transformers as the reference.

The real CLIP and T5 vocabularies cannot be downloaded here, so this script TRAINS two small tokenizers of the
same kinds and file formats over an inline corpus (English prompts, accents, Greek, Cyrillic, CJK, emoji), then
asks transformers for the token ids of a list of hard prompts with FLUX's settings.

Regenerate (from the repository root; only PyPI is needed):

    python3 -m venv /work/venv-tok
    /work/venv-tok/bin/pip install transformers tokenizers sentencepiece protobuf
    /work/venv-tok/bin/python tools/make_tokenizer_fixtures.py            # trains, writes files, transformers 5
    python3 -m venv /work/venv-tok4
    /work/venv-tok4/bin/pip install "transformers<5" tokenizers sentencepiece protobuf
    /work/venv-tok4/bin/python tools/make_tokenizer_fixtures.py --legacy  # transformers 4 references only
    /work/venv-tok/bin/python tools/make_tokenizer_fixtures.py --unicode-tables   # src/text/unicode_tables.cpp

Outputs (tests/fixtures/tokenizers/):
  clip/vocab.json, clip/merges.txt, clip/special_tokens_map.json, clip/tokenizer_config.json
      a CLIP-style byte-level BPE trained by the small trainer below (CLIP's file format: `</w>` end-of-word
      suffix, `#version: 0.2` header, <|startoftext|> / <|endoftext|> last in the vocabulary), laid out like
      FLUX.1's tokenizer/ folder;
  t5/spiece.model, t5/tokenizer.json, t5/special_tokens_map.json, t5/tokenizer_config.json
      a SentencePiece unigram model trained by the sentencepiece package with T5's settings (nmt_nfkc, pad 0,
      </s> 1, <unk> 2, no BOS, no byte fallback), and the tokenizer.json transformers writes for it, laid out
      like FLUX.1's tokenizer_2/ folder;
  expected_transformers5.json   (default mode)  ids from transformers 5 (+ raw tokenizers / sentencepiece)
  expected_transformers4.json   (--legacy)      ids from transformers 4 (slow CLIPTokenizer, fast T5, slow T5)
                                                and prints the prompts where the references disagree
  README.md there is written by hand: it explains those disagreements.

Every id list is exactly what the FLUX pipeline gets: CLIP with padding="max_length", max_length=77,
truncation=True; T5 the same with max_length 512 (dev) and 256 (schnell); plus the untruncated length
(`padding="longest"`, as the pipeline computes it to warn about truncation).

Everything is deterministic: fixed corpus, fixed merge tie-breaks, sentencepiece with one thread.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import unicodedata
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import regex  # noqa: E402  (installed with transformers)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "tests" / "fixtures" / "tokenizers"

CLIP_MAX = 77
T5_MAX = {"dev": 512, "schnell": 256}
CLIP_NUM_MERGES = 1800
T5_VOCAB_SIZE = 1000
T5_EXTRA_IDS = 100

# CLIP's pre-tokenizer pattern (transformers' CLIPTokenizer, both the slow and the tokenizers-backed class).
CLIP_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# --------------------------------------------------------------------------------------------------------------------
# Hard prompts. Each is (name, text). Names are stable keys for the C++ test's messages.
# --------------------------------------------------------------------------------------------------------------------
LONG_PROMPT = (
    "A breathtaking ultra-detailed digital painting of an ancient library hidden inside a giant hollow tree, "
    "warm golden light streaming through stained glass windows, floating books and glowing runes, a small "
    "orange cat wearing round spectacles reading a scroll on a velvet cushion, dust motes in the air, "
    "intricate carved wooden shelves, spiral staircases, moss and ivy creeping over the walls, cinematic "
    "composition, volumetric lighting, depth of field, 8k, trending on artstation, by a master illustrator. "
)
PROMPTS = [
    ("empty", ""),
    ("spaces_only", "     "),
    ("cat_photo", "a photo of a cat"),
    ("mixed_case", "A Photo Of A CAT in NEW York, iPhone McDonald's"),
    ("punctuation_runs", "!!!???... wow!!! (really?) --- [ok] {x} ;;; :-) ,,, ..."),
    ("apostrophes", "it's don't I'M we'll they've you'd she'S 'quoted' rock'n'roll"),
    ("numbers", "1234567 and 3.14159, 1,000,000 x 2024-06-01 #42 100%"),
    ("accents_nfc", "Café naïve résumé façade Ångström über Straße"),
    ("accents_nfd", "Cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m"),
    ("fullwidth_compat", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ① ﬁ ㍿ ½ ™ Ⅻ"),
    ("emoji", "🐱‍👤🚀 emoji 👍🏽 ❤️ 🇯🇵 cat🐈dog"),
    ("cjk", "猫の写真"),
    ("cjk_mixed", "abc日本語def123 한국어 텍스트 中文，标点。"),
    ("tabs_newlines", "tabs\tand\nnewlines\r\n  multiple   spaces \t\n end"),
    ("html", "<b>bold</b> <i>italic</i> &amp; &lt;tag&gt; <a href=\"x.html\">link</a>"),
    ("greek_sigma", "ΟΔΥΣΣΕΥΣ ΣΟΦΟΣ Σ σ ς"),
    ("turkish_i", "İstanbul IŞIK ı i"),
    ("cyrillic_arabic", "Привет мир مرحبا بالعالم"),
    ("special_tokens", "a <|endoftext|> b </s> c <pad> d <unk> e <extra_id_0> f <|startoftext|>"),
    ("special_tokens_case", "x <|ENDOFTEXT|> y !!<|endoftext|> z <|StartOfText|>w <|ſtartoftext|>"),
    ("control_chars", "a\u0000b\u0007c\u200bd\u00ade\u200df\ufeffg\ufffdh"),
    ("unicode_spaces", "a\u00a0b\u3000c\u2028d\u0085e\u1680f\u2009g\u202fh"),
    ("metaspace_literal", "\u2581leading and \u2581 alone \u2581\u2581 double"),
    ("combining_quirks", "Vie\u0323\u0302t ｅ\u0301 Ａ\u0301 x\u0301\u0301\u0301 x\u0345y \u03b1\u0345 a\r\nb"),
    ("quotes_dashes", "“quoted” ‘single’ — em – en … don’t"),
    ("repeats", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa !!!!!!!!!!!!!!!!!!!!!!!!"),
    ("long_clip", LONG_PROMPT),
    ("very_long", (LONG_PROMPT * 7).strip()),
    ("cat_x75", " ".join(["cat"] * 75)),
    ("cat_x76", " ".join(["cat"] * 76)),
    ("a_x255", " ".join(["a"] * 255)),
    ("a_x256", " ".join(["a"] * 256)),
    ("a_x511", " ".join(["a"] * 511)),
    ("a_x512", " ".join(["a"] * 512)),
]
# Prompts whose untruncated length must sit exactly on a truncation boundary ("cat" is one CLIP token, "a" one
# T5 token in the trained vocabularies; checked when the references are made).
BOUNDARIES = {"cat_x75": ("clip", 77), "cat_x76": ("clip", 78), "a_x255": ("t5", 256), "a_x256": ("t5", 257),
              "a_x511": ("t5", 512), "a_x512": ("t5", 513)}

# --------------------------------------------------------------------------------------------------------------------
# Training corpus (deterministic). Characters that should stay out of the vocabularies (to exercise unknowns):
# 🚀 🇯🇵 ① ㍿ Ⅻ 한국어 Arabic — they appear in prompts only.
# --------------------------------------------------------------------------------------------------------------------
NOUNS = """cat kitten dog puppy fox wolf bear rabbit owl eagle sparrow horse unicorn dragon phoenix tiger lion
elephant giraffe whale dolphin octopus jellyfish butterfly bee spider snake turtle frog penguin koala panda raccoon
man woman girl boy child grandmother knight samurai wizard witch astronaut pilot sailor farmer chef musician dancer
painter scientist robot android cyborg alien ghost vampire mermaid fairy angel demon king queen princess soldier
castle tower bridge lighthouse cathedral temple pagoda palace cottage cabin farmhouse skyscraper street alley market
harbor village city metropolis ruins dungeon cave tunnel garden forest jungle desert canyon valley meadow mountain
volcano glacier island beach ocean river waterfall lake pond swamp field orchard vineyard greenhouse library museum
kitchen bedroom bathroom classroom laboratory factory workshop station airport highway railway subway spaceship
starship satellite planet galaxy nebula comet asteroid moon sun star cloud storm thunder lightning rainbow sunset
sunrise twilight midnight morning evening winter summer autumn spring snow rain fog mist wind fire smoke ice water
car truck bicycle motorcycle train airplane helicopter boat sailboat submarine balloon rocket carriage tractor
book scroll map lantern candle clock mirror window door staircase chair table sofa bed lamp vase teapot cup bowl
plate bottle basket umbrella hat crown sword shield armor cloak dress jacket scarf glasses necklace ring flower rose
tulip sunflower lotus cherry blossom tree oak pine willow maple bamboo mushroom fern ivy moss grass leaf branch root
apple orange banana strawberry lemon grape peach bread cake pie cookie chocolate coffee tea soup pizza sushi noodle"""
ADJECTIVES = """ancient modern futuristic medieval victorian gothic baroque rustic cozy tiny giant enormous colossal
beautiful gorgeous stunning majestic elegant graceful fierce cute adorable fluffy shiny glowing luminous radiant
dark gloomy eerie haunted mysterious magical enchanted mystical surreal dreamy whimsical playful cheerful happy sad
lonely peaceful serene calm quiet busy crowded abandoned overgrown ruined broken rusty dusty wet frozen burning
golden silver crystal glass wooden stone marble metallic velvet silk paper neon pastel vibrant colorful monochrome
red orange yellow green blue purple pink white black gray brown turquoise crimson emerald sapphire amber ivory
detailed intricate ornate minimalist realistic photorealistic hyperrealistic stylized abstract geometric organic"""
STYLES = """photo photograph portrait landscape closeup macro panorama illustration painting drawing sketch
watercolor gouache acrylic charcoal pastel engraving woodcut lithograph poster comic manga anime cartoon render
sculpture mosaic tapestry collage pixel art vector art concept art matte painting digital art oil on canvas
cinematic lighting volumetric lighting studio lighting rim lighting soft light hard shadows golden hour blue hour
depth of field bokeh wide angle telephoto fisheye tilt shift long exposure film grain high contrast low key
8k 4k hdr unreal engine octane render ray tracing trending on artstation award winning masterpiece best quality"""
VERBS = """sitting standing walking running flying swimming dancing singing reading writing painting sleeping
dreaming eating drinking cooking playing fighting hiding watching looking smiling laughing crying floating
glowing burning melting falling rising wearing holding carrying riding exploring building climbing"""
PLACES = """in the rain | under the stars | on the moon | at the beach | in a forest | by the river | on a rooftop |
in a busy market | inside a cave | on top of a mountain | in outer space | under the sea | in the desert |
through the window | behind the door | next to a fireplace | near the old bridge | across the valley"""
EXTRA_LINES = [
    "Café au lait, crème brûlée, naïve façade, résumé, Ångström, über, Straße, São Paulo, Zürich, Kraków.",
    "El niño comió piñata en la mañana; ¿qué tal? ¡Olé! Le garçon à l'école; déjà vu; cœur; Noël.",
    "Ελληνικά: καλημέρα κόσμε, ΟΔΥΣΣΕΥΣ, σοφός, θάλασσα. Русский: привет, мир, кошка, собака.",
    "日本語のテキスト：猫の写真、犬の絵、東京の夜景。中文：一只猫在桌子上，美丽的风景。",
    "Emoji: 😀 😂 🐱 🐶 ❤️ 👍 🎉 🌸 🔥 ✨ 🐱‍👤 👩‍💻 🏳️‍🌈 👍🏽",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14 1,000 50% #1 $20 €15 £3 ¥500",
    "Punctuation: ... !!! ??? --- (parentheses) [brackets] {braces} <angle> \"quotes\" 'single' ; : , .",
    "Contractions: it's don't can't won't I'm you're we've they'll she'd he's that's",
    "HTML: <b>bold</b> <i>italic</i> <div class=\"box\">text</div> &amp; &lt; &gt;",
    "Typography: “curly quotes” ‘single’ — em dash – en dash … ellipsis • bullet © ® °C",
]


def make_corpus() -> list[str]:
    rng = random.Random(20240601)
    nouns, adjectives, verbs = NOUNS.split(), ADJECTIVES.split(), VERBS.split()
    styles = [w for w in STYLES.split()]
    places = [p.strip() for p in PLACES.replace("\n", " ").split("|")]
    lines = []
    for _ in range(4000):
        s = (f"{rng.choice(['a', 'an', 'the', 'two', 'three', 'many'])} {rng.choice(adjectives)} "
             f"{rng.choice(adjectives)} {rng.choice(nouns)} {rng.choice(verbs)} {rng.choice(places)}, "
             f"{' '.join(rng.sample(styles, 3))}, {rng.choice(styles)}")
        r = rng.random()
        if r < 0.15:
            s = s.capitalize()
        elif r < 0.2:
            s = s.upper()
        elif r < 0.3:
            s = s.title()
        if rng.random() < 0.3:
            s += rng.choice([".", "!", "...", "?", " :)", " #art", " (detailed)", " [v2]", " -- 2024"])
        lines.append(s)
    for _ in range(12):
        lines.extend(EXTRA_LINES)
    return lines


# --------------------------------------------------------------------------------------------------------------------
# CLIP-style byte-level BPE (the file format of openai/clip-vit-large-patch14)
# --------------------------------------------------------------------------------------------------------------------
def bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def train_clip_bpe(corpus: list[str], num_merges: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Plain BPE over CLIP-pre-tokenized words; ties broken by the smallest pair (deterministic)."""
    byte_encoder = bytes_to_unicode()
    pat = regex.compile(CLIP_PATTERN, regex.IGNORECASE)
    words: collections.Counter[tuple[str, ...]] = collections.Counter()
    for line in corpus:
        text = " ".join(unicodedata.normalize("NFC", line).lower().split())
        for piece in pat.findall(text):
            chars = [byte_encoder[b] for b in piece.encode("utf-8")]
            words[tuple(chars[:-1]) + (chars[-1] + "</w>",)] += 1
    word_list = [[list(w), c] for w, c in words.items()]
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for symbols, count in word_list:
            for a, b in zip(symbols, symbols[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        best_count = max(pairs.values())
        if best_count < 2:
            break
        best = min(p for p, c in pairs.items() if c == best_count)
        merges.append(best)
        for entry in word_list:
            symbols = entry[0]
            out, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == best[0] and symbols[i + 1] == best[1]:
                    out.append(best[0] + best[1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            entry[0] = out
    # Vocabulary in CLIP's order: the 256 byte symbols, the same with </w>, every merge result, the specials.
    vocab: dict[str, int] = {}
    base = list(byte_encoder.values())
    for tok in base + [t + "</w>" for t in base] + [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]:
        if tok not in vocab:
            vocab[tok] = len(vocab)
    return vocab, merges


def write_clip(out: Path, corpus: list[str]) -> None:
    vocab, merges = train_clip_bpe(corpus, CLIP_NUM_MERGES)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "vocab.json", "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    with open(out / "merges.txt", "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    # As in FLUX.1-dev tokenizer/ (a copy of openai/clip-vit-large-patch14's): pad is <|endoftext|>.
    special = {
        "bos_token": {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                      "single_word": False},
        "eos_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                      "single_word": False},
        "pad_token": "<|endoftext|>",
        "unk_token": {"content": "<|endoftext|>", "lstrip": False, "normalized": True, "rstrip": False,
                      "single_word": False},
    }
    with open(out / "special_tokens_map.json", "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    # FLUX.1's tokenizer/tokenizer_config.json: <|startoftext|> is matched after normalization, <|endoftext|>
    # on the raw text (what the tokenizers-library pipeline does with a prompt containing them).
    added = {str(vocab["<|startoftext|>"]): {"content": "<|startoftext|>", "lstrip": False, "normalized": True,
                                              "rstrip": False, "single_word": False, "special": True},
             str(vocab["<|endoftext|>"]): {"content": "<|endoftext|>", "lstrip": False, "normalized": False,
                                            "rstrip": False, "single_word": False, "special": True}}
    config = {
        "add_prefix_space": False, "added_tokens_decoder": added, "bos_token": "<|startoftext|>",
        "clean_up_tokenization_spaces": True, "do_lower_case": True, "eos_token": "<|endoftext|>",
        "errors": "replace", "model_max_length": CLIP_MAX, "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
    }
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


# --------------------------------------------------------------------------------------------------------------------
# T5-style SentencePiece unigram model
# --------------------------------------------------------------------------------------------------------------------
def write_t5(out: Path, corpus: list[str]) -> None:
    import sentencepiece as spm

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpus.txt"
        corpus_file.write_text("\n".join(corpus) + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus_file), model_prefix=str(Path(tmp) / "spiece"), model_type="unigram",
            vocab_size=T5_VOCAB_SIZE, normalization_rule_name="nmt_nfkc", character_coverage=1.0,
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
            byte_fallback=False, num_threads=1, shuffle_input_sentence=False, minloglevel=2)
        # The trainer records its input and output paths (a random temporary folder): fix them so reruns
        # write identical bytes.
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString((Path(tmp) / "spiece.model").read_bytes())
        del proto.trainer_spec.input[:]
        proto.trainer_spec.input.append("corpus.txt")
        proto.trainer_spec.model_prefix = "spiece"
        (out / "spiece.model").write_bytes(proto.SerializeToString(deterministic=True))
    extra = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]
    special = {"additional_special_tokens": extra, "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    with open(out / "special_tokens_map.json", "w", encoding="utf-8") as f:
        json.dump(special, f, indent=2)
    config = {"additional_special_tokens": extra, "eos_token": "</s>", "extra_ids": T5_EXTRA_IDS,
              "legacy": True, "model_max_length": 512, "pad_token": "<pad>", "tokenizer_class": "T5Tokenizer",
              "unk_token": "<unk>"}
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    # tokenizer.json exactly as transformers builds it from spiece.model (what T5TokenizerFast saves).
    from transformers import T5TokenizerFast

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("spiece.model", "special_tokens_map.json", "tokenizer_config.json"):
            shutil.copy(out / name, Path(tmp) / name)
        tok = T5TokenizerFast.from_pretrained(tmp)
        tok.backend_tokenizer.save(str(out / "tokenizer.json"))


def write_t5_v4_dialect_json(t5_dir: Path, out_file: Path) -> None:
    """The same tokenizer.json in the form transformers 4 converts spiece.model to (T5TokenizerFast without a
    tokenizer.json): Precompiled + Strip(right) + Replace(" {2,}" -> "\u2581"), Metaspace alone. Not kept as a
    fixture either; tokenizer_test.cpp rebuilds it the same way."""
    data = json.loads((t5_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["normalizer"] = {"type": "Sequence", "normalizers": [
        data["normalizer"], {"type": "Strip", "strip_left": False, "strip_right": True},
        {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]}
    data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)


def write_t5_legacy_json(t5_dir: Path, out_file: Path) -> None:
    """The same tokenizer.json in the dialect of the published T5 / FLUX tokenizer_2 files: Metaspace with
    "add_prefix_space": true instead of "prepend_scheme". Not kept as a fixture (it would double the charsmap);
    tokenizer_test.cpp rebuilds it the same way."""
    data = json.loads((t5_dir / "tokenizer.json").read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}]}
    data["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)


# --------------------------------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------------------------------
def padded_entry(ids: list[int], untruncated_length: int, max_length: int, pad_id: int) -> dict:
    """The padded id list as {ids: the tokens before the padding, pad_id, length}: exact, and 10x smaller."""
    assert len(ids) == max_length, len(ids)
    n = min(untruncated_length, max_length)
    assert all(i == pad_id for i in ids[n:]), ids
    return {"ids": list(ids[:n]), "pad_id": pad_id, "length": max_length, "untruncated_length": untruncated_length}


def hf_ids(tok, text: str, max_length: int) -> dict:
    ids = tok(text, padding="max_length", max_length=max_length, truncation=True).input_ids
    untruncated = tok(text, padding="longest").input_ids
    return padded_entry(ids, len(untruncated), max_length, tok.pad_token_id)


def raw_tokenizers_ids(tokenizer_json: Path, text: str, max_length: int) -> dict:
    """tokenizers.Tokenizer.from_file: the file's own pipeline (what transformers 4's fast class runs)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    full = tok.encode(text).ids
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=0, pad_token="<pad>")
    return padded_entry(tok.encode(text).ids, len(full), max_length, 0)


def references_v5(out: Path) -> dict:
    import sentencepiece as spm
    import tokenizers
    import transformers
    from transformers import CLIPTokenizer, T5TokenizerFast

    clip = CLIPTokenizer.from_pretrained(str(out / "clip"))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("spiece.model", "special_tokens_map.json", "tokenizer_config.json"):
            shutil.copy(out / "t5" / name, Path(tmp) / name)
        t5_spm = T5TokenizerFast.from_pretrained(tmp)
    t5_json = T5TokenizerFast.from_pretrained(str(out / "t5"))
    sp = spm.SentencePieceProcessor(model_file=str(out / "t5" / "spiece.model"))
    legacy_dir = tempfile.TemporaryDirectory()
    legacy_json = Path(legacy_dir.name) / "tokenizer.json"
    write_t5_legacy_json(out / "t5", legacy_json)
    v4_dialect_json = Path(legacy_dir.name) / "tokenizer_v4_dialect.json"
    write_t5_v4_dialect_json(out / "t5", v4_dialect_json)
    result = {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": {"python": sys.version.split()[0], "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__,
                     "unicodedata": unicodedata.unidata_version},
        "settings": {"clip_max_length": CLIP_MAX, "t5_max_length": T5_MAX,
                     "call": "tok(prompt, padding='max_length', max_length=N, truncation=True).input_ids; "
                             "untruncated_length = len(tok(prompt, padding='longest').input_ids)"},
        "prompts": [],
    }
    for name, text in PROMPTS:
        entry = {"name": name, "text": text,
                 "clip": hf_ids(clip, text, CLIP_MAX),
                 "t5_from_spiece": {k: hf_ids(t5_spm, text, n) for k, n in T5_MAX.items()},
                 "t5_from_tokenizer_json": {k: hf_ids(t5_json, text, n) for k, n in T5_MAX.items()},
                 "t5_legacy_json_raw_tokenizers": {
                     k: raw_tokenizers_ids(legacy_json, text, n)
                     for k, n in T5_MAX.items()},
                 "t5_v4_dialect_json_raw_tokenizers": {
                     k: raw_tokenizers_ids(v4_dialect_json, text, n) for k, n in T5_MAX.items()},
                 # sentencepiece's own encoder + </s>, unpadded: only to report where it differs from transformers.
                 "sentencepiece_native": sp.encode(text) + [1]}
        if name in BOUNDARIES:
            which, n = BOUNDARIES[name]
            got = entry["clip"] if which == "clip" else entry["t5_from_tokenizer_json"]["dev"]
            assert got["untruncated_length"] == n, (name, got["untruncated_length"], n)
        result["prompts"].append(entry)
    return result


def references_v4(out: Path) -> dict:
    import sentencepiece as spm
    import tokenizers
    import transformers
    from transformers import CLIPTokenizer, CLIPTokenizerFast, T5Tokenizer, T5TokenizerFast

    try:
        import ftfy  # noqa: F401

        sys.exit("ftfy is installed: CLIPTokenizer (slow) would use ftfy.fix_text; uninstall it (FLUX users "
                 "normally lack it, and the C++ port implements the BasicTokenizer path)")
    except ImportError:
        pass
    clip_slow = CLIPTokenizer.from_pretrained(str(out / "clip"))
    clip_fast = CLIPTokenizerFast.from_pretrained(str(out / "clip"))
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("spiece.model", "special_tokens_map.json", "tokenizer_config.json"):
            shutil.copy(out / "t5" / name, Path(tmp) / name)
        t5_spm_fast = T5TokenizerFast.from_pretrained(tmp)
        t5_slow = T5Tokenizer.from_pretrained(tmp)
    t5_json = T5TokenizerFast.from_pretrained(str(out / "t5"))
    result = {
        "generator": "tools/make_tokenizer_fixtures.py --legacy",
        "versions": {"python": sys.version.split()[0], "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "sentencepiece": spm.__version__,
                     "unicodedata": unicodedata.unidata_version, "regex": regex.__version__},
        "settings": {"clip_max_length": CLIP_MAX, "t5_max_length": T5_MAX},
        "prompts": [],
    }
    for name, text in PROMPTS:
        entry = {"name": name, "text": text,
                 "clip_slow": hf_ids(clip_slow, text, CLIP_MAX),
                 "clip_fast": hf_ids(clip_fast, text, CLIP_MAX),
                 "t5_fast_from_spiece": {k: hf_ids(t5_spm_fast, text, n) for k, n in T5_MAX.items()},
                 "t5_fast_from_tokenizer_json": {k: hf_ids(t5_json, text, n) for k, n in T5_MAX.items()},
                 "t5_slow": {k: hf_ids(t5_slow, text, n) for k, n in T5_MAX.items()}}
        result["prompts"].append(entry)
    return result


def report_disagreements(out: Path) -> None:
    """Prints, per prompt, which references disagree (the fixtures README lists and explains them)."""
    v5 = json.loads((out / "expected_transformers5.json").read_text(encoding="utf-8"))["prompts"]
    v4 = json.loads((out / "expected_transformers4.json").read_text(encoding="utf-8"))["prompts"]
    for p5, p4 in zip(v5, v4):
        notes = []
        if p5["clip"] != p4["clip_fast"]:
            notes.append("CLIP: transformers 5 != CLIPTokenizerFast 4")
        if p5["clip"] != p4["clip_slow"]:
            notes.append("CLIP: slow (transformers 4) != tokenizers library")
        ref = p5["t5_from_tokenizer_json"]
        for key, other in [("T5 5 from spiece.model", p5["t5_from_spiece"]),
                           ("T5 legacy-dialect json", p5["t5_legacy_json_raw_tokenizers"]),
                           ("T5TokenizerFast 4 from tokenizer.json", p4["t5_fast_from_tokenizer_json"]),
                           ("T5TokenizerFast 4 from spiece.model", p4["t5_fast_from_spiece"]),
                           ("T5Tokenizer 4 (slow, sentencepiece)", p4["t5_slow"])]:
            if other != ref:
                notes.append(f"T5: {key} != tokenizer.json")
        full = ref["dev"]["ids"] if ref["dev"]["untruncated_length"] <= ref["dev"]["length"] else None
        if full is not None and p5["sentencepiece_native"] != full:
            notes.append("T5: sentencepiece's own encoder != tokenizer.json")
        if notes:
            print(f"{p5['name']}: " + "; ".join(notes))


def write_json(path: Path, data: dict) -> None:
    """One prompt per line block, id lists on one line: readable diffs, small files."""
    text = json.dumps(data, ensure_ascii=False, indent=1)
    # Collapse the number lists that indent=1 spread over one line each.
    text = regex.sub(r"\[\s*([-0-9,\s]+?)\s*\]", lambda m: "[" + ",".join(m.group(1).split(",")).replace(
        "\n", "").replace(" ", "") + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------------------------
# Unicode tables for src/text/ (--unicode-tables)
# --------------------------------------------------------------------------------------------------------------------
# The C++ tokenizers need what Python and the tokenizers library get from their Unicode databases: general
# categories (\p{L}, \p{N}, control characters), lower-casing (with Python's Final_Sigma rule for the slow CLIP
# tokenizer), NFC, and grapheme cluster break classes (for the Precompiled normalizer, which works per grapheme).
# They are taken from this Python's unicodedata (categories, case, NFC) and from the regex module (grapheme
# break classes, Extended_Pictographic, which unicodedata lacks).
CATEGORIES = ["Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi",
              "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"]
GRAPHEME_CLASSES = ["Other", "CR", "LF", "Control", "Extend", "ZWJ", "Regional_Indicator", "Prepend", "SpacingMark",
                    "L", "V", "T", "LV"]  # LV stands for both LV and LVT: the C++ side tells them apart (cheaper)


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """(start, value) at each change over code points 0..0x10FFFF."""
    out, prev = [], None
    for cp, v in enumerate(values):
        if v != prev:
            out.append((cp, v))
            prev = v
    return out


def _ranges(flags: list[bool]) -> list[tuple[int, int]]:
    out, start = [], None
    for cp, f in enumerate(flags + [False]):
        if f and start is None:
            start = cp
        elif not f and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def _c_array(ctype: str, name: str, values, per_line: int = 12) -> str:
    vals = [str(v) if not isinstance(v, str) else v for v in values]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    return f"const {ctype} {name}[] = {{\n    " + ",\n    ".join(lines) + f"}};\nconst size_t {name}Size = {len(vals)};\n"


def write_unicode_tables(path: Path) -> None:
    n = 0x110000
    chars = [chr(c) for c in range(n)]
    cat_index = {c: i for i, c in enumerate(CATEGORIES)}
    cats = [cat_index[unicodedata.category(ch)] for ch in chars]
    cat_runs = _runs(cats)

    # Lower-casing: one code point to one (the single exception, U+0130, is coded by hand), compressed into runs
    # of equal delta with stride 1 or 2 (A-Z, and the alternating upper/lower pairs of Latin Extended).
    lower = []
    for c in range(n):
        lo = chars[c].lower()
        if lo != chars[c] and c != 0x130:
            assert len(lo) == 1, hex(c)
            lower.append((c, ord(lo) - c))
    lower_runs = []  # (first, last, stride, delta)
    for c, d in lower:
        if lower_runs:
            first, last, stride, delta = lower_runs[-1]
            if delta == d and (c - last) in (1, 2) and (stride == 0 or c - last == stride):
                lower_runs[-1] = (first, c, c - last, delta)
                continue
        lower_runs.append((c, c, 0, d))

    # Final_Sigma as Python applies it: Case_Ignorable code points are skipped, then the neighbour must be Cased.
    # Both properties are read off str.lower() itself (see the C++ comment in unicode.cpp).
    cased_not_ignorable = [("A\u03a3" + ch).lower()[1] == "\u03c3" for ch in chars]
    final_if_between = [("A" + ch + "\u03a3").lower()[-1] == "\u03c2" for ch in chars]
    case_ignorable = [f and not c for f, c in zip(final_if_between, cased_not_ignorable)]

    # NFC: canonical combining classes, one-level canonical decompositions (Hangul is algorithmic), and whether
    # a two-code-point decomposition is a primary composite (canonical composition may produce it).
    ccc = [unicodedata.combining(ch) for ch in chars]
    ccc_runs = [(s, v) for s, v in _runs(ccc)]
    decomp = []  # (cp, first, second or 0, composable)
    for c in range(n):
        d = unicodedata.decomposition(chars[c])
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert len(parts) in (1, 2), hex(c)
        composable = len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == chars[c]
        decomp.append((c, parts[0], parts[1] if len(parts) == 2 else 0, int(composable)))

    # Grapheme cluster break classes and Extended_Pictographic from the regex module (no surrogates in a str).
    gcb = [0] * n
    text = "".join(ch for c, ch in enumerate(chars) if not 0xD800 <= c <= 0xDFFF)
    offsets = [c for c in range(n) if not 0xD800 <= c <= 0xDFFF]
    for code, name in enumerate(GRAPHEME_CLASSES):
        if name == "Other":
            continue
        names = ["LV", "LVT"] if name == "LV" else [name]
        for nm in names:
            for m in regex.finditer(r"\p{Grapheme_Cluster_Break=%s}" % nm, text):
                gcb[offsets[m.start()]] = code
    for c in range(0xD800, 0xE000):  # surrogates are Control
        gcb[c] = GRAPHEME_CLASSES.index("Control")
    pict = [False] * n
    for m in regex.finditer(r"\p{Extended_Pictographic}", text):
        pict[offsets[m.start()]] = True

    out = [
        "// Generated by tools/make_tokenizer_fixtures.py --unicode-tables: do not edit.",
        f"// Python {sys.version.split()[0]} unicodedata {unicodedata.unidata_version} (categories, lower case,"
        f" NFC); regex {regex.__version__} (grapheme break classes, Extended_Pictographic).",
        '#include "text/unicode_tables.h"',
        "",
        "namespace paradit::text::tables {",
        "",
        "// General category runs: category kCategoryValues[i] from kCategoryStarts[i] to the next start.",
        _c_array("uint32_t", "kCategoryStarts", [s for s, _ in cat_runs]),
        _c_array("uint8_t", "kCategoryValues", [v for _, v in cat_runs], 32),
        "// Lower case runs {first, last, stride, delta}: lower(c) = c + delta for c = first, first + stride, ... last.",
        _c_array("LowerRun", "kLowerRuns", ["{%d, %d, %d, %d}" % r for r in lower_runs], 6),
        "// Case_Ignorable and (Cased and not Case_Ignorable) ranges, as Python's str.lower() sees them.",
        _c_array("Range", "kCaseIgnorable", ["{%d, %d}" % r for r in _ranges(case_ignorable)], 8),
        _c_array("Range", "kCasedNotIgnorable", ["{%d, %d}" % r for r in _ranges(cased_not_ignorable)], 8),
        "// Canonical combining class runs (as for categories).",
        _c_array("uint32_t", "kCombiningStarts", [s for s, _ in ccc_runs]),
        _c_array("uint8_t", "kCombiningValues", [v for _, v in ccc_runs], 32),
        "// One-level canonical decompositions {cp, first, second (0: singleton), composable}, sorted by cp.",
        _c_array("Decomposition", "kDecompositions", ["{%d, %d, %d, %d}" % d for d in decomp], 6),
        "// Grapheme cluster break class runs (GraphemeClass values; LV covers LV and LVT).",
    ]
    gcb_runs = _runs(gcb)
    out += [
        _c_array("uint32_t", "kGraphemeStarts", [s for s, _ in gcb_runs]),
        _c_array("uint8_t", "kGraphemeValues", [v for _, v in gcb_runs], 32),
        "// Extended_Pictographic ranges.",
        _c_array("Range", "kExtendedPictographic", ["{%d, %d}" % r for r in _ranges(pict)], 8),
        "}  // namespace paradit::text::tables",
        "",
    ]
    path.write_text("\n".join(out), encoding="utf-8")
    print(f"wrote {path}: {len(cat_runs)} category runs, {len(lower_runs)} lower runs, {len(decomp)} "
          f"decompositions, {len(gcb_runs)} grapheme runs")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--legacy", action="store_true", help="write expected_transformers4.json only (transformers<5)")
    ap.add_argument("--unicode-tables", action="store_true", help="write src/text/unicode_tables.cpp only")
    args = ap.parse_args()
    out: Path = args.out
    if args.unicode_tables:
        write_unicode_tables(REPO_ROOT / "src" / "text" / "unicode_tables.cpp")
        return
    if args.legacy:
        write_json(out / "expected_transformers4.json", references_v4(out))
        report_disagreements(out)
        return
    corpus = make_corpus()
    write_clip(out / "clip", corpus)
    write_t5(out / "t5", corpus)
    write_json(out / "expected_transformers5.json", references_v5(out))


if __name__ == "__main__":
    main()
