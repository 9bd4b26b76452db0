// CLIP and T5 tokenizers against transformers: every hard prompt of tests/fixtures/tokenizers (made by
// tools/make_tokenizer_fixtures.py from small trained vocabularies) must give exactly transformers' ids,
// padded and truncated as the FLUX pipeline asks, with the same untruncated length. Then the error paths.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "paradit/core/status.h"
#include "paradit/text/clip_tokenizer.h"
#include "paradit/text/t5_tokenizer.h"
#include "test_util.h"

namespace paradit {
namespace {

using test::expect_error;

namespace fs = std::filesystem;
using nlohmann::json;

std::string tok_dir() { return test::fixtures_dir() + "/tokenizers"; }

json load_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

const json& expected5() {
  static const json j = load_json(tok_dir() + "/expected_transformers5.json");
  return j;
}
const json& expected4() {
  static const json j = load_json(tok_dir() + "/expected_transformers4.json");
  return j;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A fresh folder under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("paradit_tokenizer_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name, const std::string& content) const {
    const std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  std::string path() const { return path_.string(); }

 private:
  fs::path path_;
};

// The fixture's {ids (before padding), pad_id, length, untruncated_length} back to transformers' full list.
std::vector<int32_t> padded(const json& entry) {
  std::vector<int32_t> ids = entry["ids"].get<std::vector<int32_t>>();
  ids.resize(entry["length"].get<size_t>(), entry["pad_id"].get<int32_t>());
  return ids;
}

std::string show(const std::vector<int32_t>& ids) {
  std::ostringstream s;
  for (size_t i = 0; i < ids.size() && i < 40; ++i) s << (i ? " " : "") << ids[i];
  if (ids.size() > 40) s << " ... (" << ids.size() << ")";
  return s.str();
}

// Checks one tokenizer output against one fixture entry; returns false (with a message) on any difference.
void expect_matches(const TokenizedPrompt& got, const json& want, const std::string& what) {
  const std::vector<int32_t> ids = padded(want);
  EXPECT_EQ(got.ids, ids) << what << "\n  got  " << show(got.ids) << "\n  want " << show(ids);
  EXPECT_EQ(got.untruncated_length, want["untruncated_length"].get<int>()) << what;
  EXPECT_EQ(got.truncated(), want["untruncated_length"].get<int>() > want["length"].get<int>()) << what;
}

int length_of(const json& entry) { return entry["length"].get<int>(); }

template <typename Encode>
void check_all(const json& expected, const std::string& key, const std::string& label, Encode encode) {
  int checked = 0;
  for (const json& p : expected["prompts"]) {
    const std::string name = p["name"].get<std::string>();
    const std::string text = p["text"].get<std::string>();
    const json& want = p[key];
    if (want.contains("ids")) {
      expect_matches(encode(text, length_of(want)), want, label + " / " + name);
      ++checked;
    } else {
      for (const auto& [variant, entry] : want.items()) {  // T5: "dev" (512) and "schnell" (256)
        expect_matches(encode(text, length_of(entry)), entry, label + " / " + name + " / " + variant);
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 20) << label;
}

// --- CLIP ---------------------------------------------------------------------------------------------------

TEST(ClipTokenizer, SlowRulesMatchTransformers4Slow) {
  const ClipTokenizer tok = ClipTokenizer::load(tok_dir() + "/clip", ClipTextRules::kSlowTransformers);
  check_all(expected4(), "clip_slow", "CLIPTokenizer (transformers 4, slow)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
}

TEST(ClipTokenizer, TokenizersRulesMatchTransformers5AndFast4) {
  const ClipTokenizer tok = ClipTokenizer::load(tok_dir() + "/clip", ClipTextRules::kTokenizersLibrary);
  check_all(expected5(), "clip", "CLIPTokenizer (transformers 5)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
  check_all(expected4(), "clip_fast", "CLIPTokenizerFast (transformers 4)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
}

TEST(ClipTokenizer, SpecialIdsAndUnpadded) {
  const ClipTokenizer tok = ClipTokenizer::load(tok_dir() + "/clip");
  EXPECT_EQ(tok.rules(), ClipTextRules::kTokenizersLibrary);
  EXPECT_EQ(tok.pad_id(), tok.eos_id());  // FLUX's CLIP pads with <|endoftext|>
  EXPECT_EQ(tok.eos_id(), static_cast<int32_t>(tok.vocab_size()) - 1);
  EXPECT_EQ(tok.bos_id(), tok.eos_id() - 1);
  const std::vector<int32_t> empty = tok.encode_unpadded("");
  EXPECT_EQ(empty, (std::vector<int32_t>{tok.bos_id(), tok.eos_id()}));
  // encode_unpadded is the untruncated prefix of encode.
  const std::string prompt = "a photo of a cat, 8k";
  const std::vector<int32_t> full = tok.encode_unpadded(prompt);
  const TokenizedPrompt fixed = tok.encode(prompt);
  ASSERT_EQ(fixed.ids.size(), 77u);
  EXPECT_EQ(std::vector<int32_t>(fixed.ids.begin(), fixed.ids.begin() + full.size()), full);
  // from_files gives the same tokenizer as load() for FLUX-like files.
  const ClipTokenizer bare = ClipTokenizer::from_files(tok_dir() + "/clip/vocab.json", tok_dir() + "/clip/merges.txt");
  EXPECT_EQ(bare.encode(prompt).ids, fixed.ids);
}

// --- T5 -----------------------------------------------------------------------------------------------------

TEST(T5Tokenizer, SentencePieceModelMatchesTransformers) {
  const T5Tokenizer tok = T5Tokenizer::from_sentencepiece(tok_dir() + "/t5/spiece.model");
  check_all(expected5(), "t5_from_spiece", "T5Tokenizer from spiece.model (transformers 5)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
}

TEST(T5Tokenizer, TokenizerJsonMatchesTransformers) {
  const T5Tokenizer tok = T5Tokenizer::from_tokenizer_json(tok_dir() + "/t5/tokenizer.json");
  check_all(expected5(), "t5_from_tokenizer_json", "T5TokenizerFast from tokenizer.json (transformers 5)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
  check_all(expected4(), "t5_fast_from_tokenizer_json", "T5TokenizerFast from tokenizer.json (transformers 4)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
  // load() of the folder prefers tokenizer.json, as transformers does.
  const T5Tokenizer folder = T5Tokenizer::load(tok_dir() + "/t5");
  EXPECT_EQ(folder.encode("a photo of a cat", 512).ids, tok.encode("a photo of a cat", 512).ids);
  EXPECT_EQ(tok.vocab_size(), 1100u);  // 1000 pieces + 100 sentinels
  EXPECT_EQ(tok.pad_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.unk_id(), 2);
}

// The published T5 / FLUX.1 tokenizer.json files use the older Metaspace spelling ("add_prefix_space": true);
// this rebuilds that file from the fixture exactly as tools/make_tokenizer_fixtures.py does for its reference.
TEST(T5Tokenizer, LegacyDialectTokenizerJsonMatchesTokenizersLibrary) {
  json j = load_json(tok_dir() + "/t5/tokenizer.json");
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "WhitespaceSplit"}},
                          {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true}}}}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"add_prefix_space", true}};
  TempDir dir;
  const T5Tokenizer tok = T5Tokenizer::from_tokenizer_json(dir.file("tokenizer.json", j.dump()));
  check_all(expected5(), "t5_legacy_json_raw_tokenizers", "tokenizers.Tokenizer.from_file (legacy dialect)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
}

// transformers 4 converts a bare spiece.model to Precompiled + Strip + Replace(" {2,}") and Metaspace alone
// (no WhitespaceSplit); reading that tokenizer.json must follow its steps.
TEST(T5Tokenizer, Transformers4ConvertedDialectMatches) {
  json j = load_json(tok_dir() + "/t5/tokenizer.json");
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers",
                      {j["normalizer"],
                       {{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}},
                       {{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", "\u2581"}}}}};
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"},
                        {"split", true}};
  TempDir dir;
  const T5Tokenizer tok = T5Tokenizer::from_tokenizer_json(dir.file("tokenizer.json", j.dump()));
  check_all(expected5(), "t5_v4_dialect_json_raw_tokenizers", "tokenizers.Tokenizer.from_file (v4 dialect)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
  check_all(expected4(), "t5_fast_from_spiece", "T5TokenizerFast from spiece.model (transformers 4)",
            [&](const std::string& t, int n) { return tok.encode(t, n); });
}

TEST(T5Tokenizer, UnpaddedIsPrefixOfPadded) {
  const T5Tokenizer tok = T5Tokenizer::load(tok_dir() + "/t5");
  for (const json& p : expected5()["prompts"]) {
    const std::string text = p["text"].get<std::string>();
    const std::vector<int32_t> full = tok.encode_unpadded(text);
    const TokenizedPrompt fixed = tok.encode(text, T5Tokenizer::kFluxDevMaxLength);
    EXPECT_EQ(static_cast<int>(full.size()), fixed.untruncated_length) << p["name"];
    if (full.size() <= fixed.ids.size()) {
      EXPECT_TRUE(std::equal(full.begin(), full.end(), fixed.ids.begin())) << p["name"];
    } else {
      EXPECT_EQ(fixed.ids.back(), tok.eos_id()) << p["name"];  // truncated text still ends with </s>
    }
  }
}

// --- errors -------------------------------------------------------------------------------------------------

TEST(TokenizerErrors, MissingFiles) {
  TempDir dir;
  expect_error([&] { ClipTokenizer::load(dir.path()); }, StatusCode::kNotFound, {"vocab.json"});
  expect_error([&] { T5Tokenizer::load(dir.path()); }, StatusCode::kNotFound, {"spiece.model", dir.path()});
  expect_error([&] { T5Tokenizer::from_sentencepiece(dir.path() + "/spiece.model"); }, StatusCode::kNotFound,
               {"spiece.model"});
  expect_error([&] { T5Tokenizer::from_tokenizer_json(dir.path() + "/nope.json"); }, StatusCode::kNotFound,
               {"nope.json"});
  const std::string vocab = dir.file("vocab.json", read_file(tok_dir() + "/clip/vocab.json"));
  expect_error([&] { ClipTokenizer::from_files(vocab, dir.path() + "/merges.txt"); }, StatusCode::kNotFound,
               {"merges.txt"});
}

TEST(TokenizerErrors, CorruptClipFiles) {
  TempDir dir;
  const std::string vocab_text = read_file(tok_dir() + "/clip/vocab.json");
  const std::string merges_text = read_file(tok_dir() + "/clip/merges.txt");
  const std::string good_vocab = dir.file("vocab.json", vocab_text);
  const std::string good_merges = dir.file("merges.txt", merges_text);

  // Not JSON; not an object of ids; an id that is not an integer.
  const std::string bad_json = dir.file("bad.json", vocab_text.substr(0, vocab_text.size() / 2));
  expect_error([&] { ClipTokenizer::from_files(bad_json, good_merges); }, StatusCode::kCorruptData,
               {"bad.json", "not valid JSON"});
  const std::string list = dir.file("list.json", "[1, 2, 3]");
  expect_error([&] { ClipTokenizer::from_files(list, good_merges); }, StatusCode::kCorruptData, {"list.json"});
  const std::string strid = dir.file("strid.json", R"({"a": "zero", "b": 1})");
  expect_error([&] { ClipTokenizer::from_files(strid, good_merges); }, StatusCode::kCorruptData,
               {"strid.json", "\"a\""});

  // A merges line that is not two symbols; a merge of symbols the vocabulary lacks (mismatched files).
  const std::string three = dir.file("three.txt", "#version: 0.2\na b c\n");
  expect_error([&] { ClipTokenizer::from_files(good_vocab, three); }, StatusCode::kCorruptData,
               {"three.txt", "line 2"});
  const std::string unknown = dir.file("unknown.txt", merges_text + "\xe2\x82\xac \xe2\x82\xac\n");
  expect_error([&] { ClipTokenizer::from_files(good_vocab, unknown); }, StatusCode::kCorruptData,
               {"unknown.txt", "is not in"});

  // A vocabulary without the special tokens.
  json v = json::parse(vocab_text);
  v.erase("<|endoftext|>");
  const std::string no_eos = dir.file("no_eos.json", v.dump());
  expect_error([&] { ClipTokenizer::from_files(no_eos, good_merges); }, StatusCode::kCorruptData,
               {"no_eos.json", "<|endoftext|>"});
}

TEST(TokenizerErrors, CorruptSentencePieceModel) {
  TempDir dir;
  const std::string model = read_file(tok_dir() + "/t5/spiece.model");
  // Cut in the middle of a field.
  const std::string cut = dir.file("cut.model", model.substr(0, model.size() / 3));
  expect_error([&] { T5Tokenizer::from_sentencepiece(cut); }, StatusCode::kCorruptData, {"cut.model"});
  // Not a protobuf at all.
  const std::string text = dir.file("text.model", "this is not a sentencepiece model\n");
  expect_error([&] { T5Tokenizer::from_sentencepiece(text); }, StatusCode::kCorruptData, {"text.model"});
  const std::string empty = dir.file("empty.model", "");
  expect_error([&] { T5Tokenizer::from_sentencepiece(empty); }, StatusCode::kCorruptData,
               {"empty.model", "no pieces"});
  // A broken charsmap: a valid ModelProto with only a normalizer_spec whose charsmap claims a huge trie.
  std::string proto;
  const std::string piece = std::string("\x0a\x05<unk>\x18\x02", 9);  // piece "<unk>", type UNKNOWN
  proto += std::string("\x0a") + static_cast<char>(piece.size()) + piece;
  const std::string charsmap("\xff\xff\x00\x00" "abcdefgh", 12);
  const std::string spec = std::string("\x12") + static_cast<char>(charsmap.size()) + charsmap;
  proto += std::string("\x1a") + static_cast<char>(spec.size()) + spec;
  const std::string bad_map = dir.file("bad_map.model", proto);
  expect_error([&] { T5Tokenizer::from_sentencepiece(bad_map); }, StatusCode::kCorruptData,
               {"bad_map.model", "trie size"});
}

TEST(TokenizerErrors, CorruptOrUnsupportedTokenizerJson) {
  TempDir dir;
  const std::string half = dir.file("half.json", read_file(tok_dir() + "/t5/tokenizer.json").substr(0, 5000));
  expect_error([&] { T5Tokenizer::from_tokenizer_json(half); }, StatusCode::kCorruptData, {"half.json"});
  json j = load_json(tok_dir() + "/t5/tokenizer.json");
  json bpe = j;
  bpe["model"]["type"] = "BPE";
  expect_error([&] { T5Tokenizer::from_tokenizer_json(dir.file("bpe.json", bpe.dump())); },
               StatusCode::kUnimplemented, {"bpe.json", "BPE"});
  json first = j;
  first["pre_tokenizer"]["pretokenizers"][1]["prepend_scheme"] = "first";
  expect_error([&] { T5Tokenizer::from_tokenizer_json(dir.file("first.json", first.dump())); },
               StatusCode::kUnimplemented, {"first.json", "first"});
  json bad64 = j;
  bad64["normalizer"]["precompiled_charsmap"] = "not*base64";
  expect_error([&] { T5Tokenizer::from_tokenizer_json(dir.file("b64.json", bad64.dump())); },
               StatusCode::kCorruptData, {"b64.json", "base64"});
}

TEST(TokenizerErrors, BadPromptsAndLengths) {
  const ClipTokenizer clip = ClipTokenizer::load(tok_dir() + "/clip");
  const T5Tokenizer t5 = T5Tokenizer::load(tok_dir() + "/t5");
  for (const std::string& bad : {std::string("caf\xc3"), std::string("\xed\xa0\x80"), std::string("\xc0\xaf")}) {
    expect_error([&] { clip.encode(bad); }, StatusCode::kInvalidArgument, {"prompt", "UTF-8"});
    expect_error([&] { t5.encode(bad, 512); }, StatusCode::kInvalidArgument, {"prompt", "UTF-8"});
  }
  expect_error([&] { clip.encode("a cat", 2); }, StatusCode::kInvalidArgument, {"max_length"});
  expect_error([&] { t5.encode("a cat", 1); }, StatusCode::kInvalidArgument, {"max_length"});
}

}  // namespace
}  // namespace paradit
