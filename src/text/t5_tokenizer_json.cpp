// tokenizer.json (the tokenizers library's serialization) -> T5Pipeline. Reads the steps T5 files use:
// normalizer Precompiled / Strip / Replace / Sequence, pre-tokenizer WhitespaceSplit / Metaspace / Sequence,
// model Unigram, post-processor TemplateProcessing, and added_tokens. Anything else is kUnimplemented, named.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "paradit/core/status.h"
#include "text/t5_loaders.h"
#include "text/text_file.h"
#include "text/utf8.h"

namespace paradit::text {
namespace {

using nlohmann::json;

// base64 (RFC 4648, with padding), as serde writes precompiled_charsmap.
std::string base64_decode(const std::string& in, const std::string& name) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0;
  size_t i = 0;
  for (; i < in.size() && in[i] != '='; ++i) {
    const int v = value(in[i]);
    if (v < 0) PD_THROW(kCorruptData, name, ": precompiled_charsmap is not base64 (character ", i, ")");
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  for (; i < in.size(); ++i) {
    if (in[i] != '=') PD_THROW(kCorruptData, name, ": precompiled_charsmap has data after base64 padding");
  }
  return out;
}

const json& member(const json& j, const char* key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) PD_THROW(kCorruptData, where, ": missing \"", key, "\"");
  return j[key];
}

std::string type_of(const json& j, const std::string& where) {
  const json& t = member(j, "type", where);
  if (!t.is_string()) PD_THROW(kCorruptData, where, ": \"type\" must be a string");
  return t.get<std::string>();
}

void add_normalizer(const json& j, const std::string& where, std::vector<NormalizerStep>& out) {
  if (j.is_null()) return;
  const std::string type = type_of(j, where);
  if (type == "Sequence") {
    for (const json& n : member(j, "normalizers", where)) add_normalizer(n, where, out);
  } else if (type == "Precompiled") {
    const json& blob = member(j, "precompiled_charsmap", where);
    if (blob.is_null()) return;  // an empty charsmap normalizes nothing
    NormalizerStep s{NormalizerStep::Kind::kPrecompiled};
    s.charsmap = std::make_shared<PrecompiledCharsmap>(base64_decode(blob.get<std::string>(), where), where);
    out.push_back(std::move(s));
  } else if (type == "Strip") {
    NormalizerStep s{NormalizerStep::Kind::kStrip};
    s.strip_left = j.value("strip_left", true);
    s.strip_right = j.value("strip_right", true);
    out.push_back(std::move(s));
  } else if (type == "Replace") {
    NormalizerStep s{NormalizerStep::Kind::kReplace};
    s.content = utf8_decode(member(j, "content", where).get<std::string>(), where);
    const json& pattern = member(j, "pattern", where);
    if (pattern.contains("String")) {
      s.pattern = utf8_decode(pattern["String"].get<std::string>(), where);
    } else if (pattern.contains("Regex")) {
      // Only the regexes SentencePiece converters emit: "X{n,}", "X+" for one literal X, and "\s+".
      const std::string re = pattern["Regex"].get<std::string>();
      const std::u32string r = utf8_decode(re, where);
      if (re == "\\s+") {
        s.any_white_space = true;
      } else if (r.size() == 2 && r[1] == U'+' && r[0] != U'\\') {
        s.pattern = r.substr(0, 1), s.min_repeat = 1;
      } else if (r.size() >= 5 && r[1] == U'{' && r.substr(r.size() - 2) == U",}" && r[0] != U'\\') {
        s.pattern = r.substr(0, 1);
        const std::string digits = re.substr(re.find('{') + 1, re.size() - re.find('{') - 3);
        if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
          PD_THROW(kUnimplemented, where, ": Replace regex \"", re, "\" is not supported");
        }
        s.min_repeat = std::max(1, std::stoi(digits));
      } else {
        PD_THROW(kUnimplemented, where, ": Replace regex \"", re, "\" is not supported");
      }
    } else {
      PD_THROW(kCorruptData, where, ": Replace pattern must be {\"String\"} or {\"Regex\"}");
    }
    out.push_back(std::move(s));
  } else {
    PD_THROW(kUnimplemented, where, ": normalizer \"", type, "\" is not supported (T5 uses Precompiled)");
  }
}

void add_pre_tokenizer(const json& j, const std::string& where, std::vector<PreTokenizerStep>& out) {
  if (j.is_null()) return;
  const std::string type = type_of(j, where);
  if (type == "Sequence") {
    for (const json& p : member(j, "pretokenizers", where)) add_pre_tokenizer(p, where, out);
  } else if (type == "WhitespaceSplit") {
    out.push_back({PreTokenizerStep::Kind::kWhitespaceSplit});
  } else if (type == "Metaspace") {
    PreTokenizerStep s{PreTokenizerStep::Kind::kMetaspace};
    const std::u32string rep = utf8_decode(j.value("replacement", std::string("\u2581")), where);
    if (rep.size() != 1) PD_THROW(kCorruptData, where, ": Metaspace replacement must be one character");
    s.replacement = rep[0];
    s.split = j.value("split", true);
    if (j.contains("prepend_scheme")) {
      const std::string scheme = j["prepend_scheme"].get<std::string>();
      if (scheme == "first") {
        PD_THROW(kUnimplemented, where, ": Metaspace prepend_scheme \"first\" (non-legacy T5) is not supported");
      }
      if (scheme != "always" && scheme != "never") PD_THROW(kCorruptData, where, ": prepend_scheme \"", scheme, "\"");
      s.prepend = scheme == "always";
    } else {
      s.prepend = j.value("add_prefix_space", true);  // the older dialect of the published T5 files
    }
    out.push_back(s);
  } else {
    PD_THROW(kUnimplemented, where, ": pre-tokenizer \"", type, "\" is not supported");
  }
}

int32_t special_id(const json& special_tokens, const std::string& name, const std::string& where) {
  const json& entry = member(special_tokens, name.c_str(), where);
  const json& ids = member(entry, "ids", where);
  if (!ids.is_array() || ids.size() != 1) PD_THROW(kUnimplemented, where, ": special token \"", name, "\" is not one id");
  return ids[0].get<int32_t>();
}

}  // namespace

T5Pipeline t5_pipeline_from_tokenizer_json(const std::string& path) {
  const std::string text = read_whole_file(path);
  T5Pipeline p;
  try {
    const json j = json::parse(text);
    const json& model = member(j, "model", path);
    if (type_of(model, path + ": model") != "Unigram") {
      PD_THROW(kUnimplemented, path, ": model type \"", model["type"].get<std::string>(), "\" is not Unigram");
    }
    if (model.value("byte_fallback", false)) PD_THROW(kUnimplemented, path, ": Unigram byte_fallback is not supported");
    std::vector<std::pair<std::string, double>> vocab;
    for (const json& entry : member(model, "vocab", path)) {
      if (!entry.is_array() || entry.size() != 2 || !entry[0].is_string() || !entry[1].is_number()) {
        PD_THROW(kCorruptData, path, ": model.vocab entry ", vocab.size(), " is not [piece, score]");
      }
      vocab.emplace_back(entry[0].get<std::string>(), entry[1].get<double>());
    }
    const json& unk = member(model, "unk_id", path);
    if (!unk.is_number_integer()) PD_THROW(kUnimplemented, path, ": a Unigram model without unk_id is not supported");
    p.model.emplace(std::move(vocab), unk.get<int32_t>(), path);

    if (j.contains("added_tokens")) {
      for (const json& t : j["added_tokens"]) {
        LiteralToken token{utf8_decode(member(t, "content", path).get<std::string>(), path),
                           member(t, "id", path).get<int32_t>()};
        (t.value("normalized", false) ? p.norm_tokens : p.raw_tokens).push_back(std::move(token));
      }
    }
    add_normalizer(j.value("normalizer", json()), path + ": normalizer", p.normalizers);
    add_pre_tokenizer(j.value("pre_tokenizer", json()), path + ": pre_tokenizer", p.pre_tokenizers);

    const json post = j.value("post_processor", json());
    if (!post.is_null()) {
      const std::string where = path + ": post_processor";
      if (type_of(post, where) != "TemplateProcessing") {
        PD_THROW(kUnimplemented, where, ": \"", post["type"].get<std::string>(), "\" is not supported");
      }
      bool seen_text = false;
      for (const json& item : member(post, "single", where)) {
        if (item.contains("Sequence")) {
          seen_text = true;
        } else if (item.contains("SpecialToken")) {
          const int32_t id = special_id(member(post, "special_tokens", where),
                                        member(item["SpecialToken"], "id", where).get<std::string>(), where);
          (seen_text ? p.suffix_ids : p.prefix_ids).push_back(id);
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    PD_THROW(kCorruptData, path, " is not a valid tokenizer.json: ", e.what());
  }
  p.eos_id = p.model->id_of("</s>");
  p.pad_id = p.model->id_of("<pad>");
  if (p.pad_id < 0) PD_THROW(kCorruptData, path, ": no \"<pad>\" token");
  return p;
}

}  // namespace paradit::text
