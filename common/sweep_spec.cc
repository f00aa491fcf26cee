#include "common/sweep_spec.h"

#include "common/recipe.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
#include <utility>

namespace madam {
namespace {

// ---------------------------------------------------------------------------
// Messages

// Echoes untrusted text into an error message: quoted, at most 64 bytes,
// control and non-ASCII bytes escaped, so a hostile file cannot flood a log
// or a terminal through its own error.
std::string Quote(std::string_view s) {
  constexpr size_t kMaxEcho = 64;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMaxEcho; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMaxEcho) out += "...";
  out += '"';
  return out;
}

std::string PosString(SourcePos pos) {
  return std::to_string(pos.line) + ":" + std::to_string(pos.col);
}

// Levenshtein distance, case-insensitive, '-' read as '_'. Callers bound the
// lengths (keys over 64 bytes get no suggestion), so O(n*m) is cheap.
size_t EditDistance(std::string_view a, std::string_view b) {
  auto norm = [](char c) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return c == '-' ? '_' : c;
  };
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t subst = prev[j - 1] + (norm(a[i - 1]) == norm(b[j - 1]) ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// The closest candidate within a third of the key's length (at least 1
// edit), or "" when nothing is close.
std::string ClosestName(std::string_view key, const std::vector<std::string_view>& candidates) {
  if (key.size() > 64) return "";
  size_t best = std::max<size_t>(1, key.size() / 3) + 1;
  std::string_view found;
  for (auto c : candidates) {
    size_t d = EditDistance(key, c);
    if (d < best) {
      best = d;
      found = c;
    }
  }
  return std::string(found);
}

// Names people write for a run parameter, mapped to the one it means.
const std::vector<std::pair<std::string_view, std::string_view>>& ParamSynonyms() {
  static const std::vector<std::pair<std::string_view, std::string_view>> synonyms = {
      {"learning_rate", "lr"}, {"base_learning_rate", "base_lr"}, {"eta0", "base_lr"},
      {"bit_width", "bits"},   {"num_bits", "bits"},              {"batch", "batch_size"},
      {"epoch", "epochs"},     {"random_seed", "seed"},           {"optim", "optimizer"},
  };
  return synonyms;
}

// A run parameter `key` may have meant, or "".
std::string SuggestRunParam(std::string_view key) {
  std::string direct = ClosestName(key, KnownRunParams());
  if (!direct.empty()) return direct;
  std::vector<std::string_view> names;
  for (const auto& [alias, param] : ParamSynonyms()) names.push_back(alias);
  std::string alias = ClosestName(key, names);
  for (const auto& [a, param] : ParamSynonyms()) {
    if (a == alias) return std::string(param);
  }
  return "";
}

bool IsRunParam(std::string_view name) {
  const auto& known = KnownRunParams();
  return std::find(known.begin(), known.end(), name) != known.end();
}

// ---------------------------------------------------------------------------
// A YAML document as a small tree, built from yaml-cpp's events.
//
// Building our own tree (rather than YAML::Load) puts every guard at the
// point where the parser is about to pay for input: yaml-cpp emits a
// collection's start event before it recurses into it, so a depth limit
// enforced here stops a 100,000-deep file after max_depth levels; anchors
// and aliases are refused at their first event, so an alias bomb never
// expands; and duplicate keys, which yaml-cpp accepts silently, are seen
// when each map closes.

struct YNode {
  enum class Kind { kNull, kScalar, kSequence, kMap };
  Kind kind = Kind::kNull;
  SourcePos pos;
  std::string text;  // scalars
  bool plain = false;  // a scalar written without quotes: may be a number
  // Sequence items; for a map, keys and values alternate.
  std::vector<std::unique_ptr<YNode>> children;

  bool is_map() const { return kind == Kind::kMap; }
  bool is_sequence() const { return kind == Kind::kSequence; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_null() const { return kind == Kind::kNull; }
  size_t map_size() const { return children.size() / 2; }
  const YNode& key(size_t i) const { return *children[2 * i]; }
  const YNode& value(size_t i) const { return *children[2 * i + 1]; }
};

const char* KindName(YNode::Kind kind) {
  switch (kind) {
    case YNode::Kind::kNull: return "nothing";
    case YNode::Kind::kScalar: return "a scalar";
    case YNode::Kind::kSequence: return "a list";
    case YNode::Kind::kMap: return "a map";
  }
  return "?";
}

SourcePos ToPos(const YAML::Mark& mark) {
  // yaml-cpp counts from 0 and uses -1 for "no position".
  return {std::max(0, mark.line) + 1, std::max(0, mark.column) + 1};
}

// Thrown from event callbacks to stop yaml-cpp mid-parse; caught in
// ParseTree, the one place where exceptions become a Status.
struct StopParse {
  Status status;
};

class TreeBuilder : public YAML::EventHandler {
 public:
  TreeBuilder(std::string prefix, const SweepLimits& limits)
      : prefix_(std::move(prefix)), limits_(limits) {}

  std::unique_ptr<YNode> TakeRoot() { return std::move(root_); }

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    CheckAnchor(mark, anchor);
    Add(mark, YNode::Kind::kNull);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override {
    Fail(mark, StatusCode::kInvalidArgument,
         "YAML aliases (*name) are not allowed in sweep files; write the value out");
  }

  void OnAnchor(const YAML::Mark& mark, const std::string&) override { RefuseAnchor(mark); }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    CheckAnchor(mark, anchor);
    CheckTag(mark, tag);
    YNode* node = Add(mark, YNode::Kind::kScalar);
    node->text = value;
    node->plain = (tag == "?");  // quoted scalars carry the non-specific tag "!"
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, YNode::Kind::kSequence);
  }
  void OnSequenceEnd() override { stack_.pop_back(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    Open(mark, tag, anchor, YNode::Kind::kMap);
  }
  void OnMapEnd() override {
    CheckKeys(*stack_.back());
    stack_.pop_back();
  }

 private:
  [[noreturn]] void Fail(SourcePos pos, StatusCode code, const std::string& message) {
    throw StopParse{Status(code, prefix_ + PosString(pos) + ": " + message)};
  }
  [[noreturn]] void Fail(const YAML::Mark& mark, StatusCode code, const std::string& message) {
    Fail(ToPos(mark), code, message);
  }

  void RefuseAnchor(const YAML::Mark& mark) {
    Fail(mark, StatusCode::kInvalidArgument,
         "YAML anchors (&name) are not allowed in sweep files; write the value out");
  }
  void CheckAnchor(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (anchor != YAML::NullAnchor) RefuseAnchor(mark);
  }
  void CheckTag(const YAML::Mark& mark, const std::string& tag) {
    if (tag != "?" && tag != "!" && !tag.empty()) {
      Fail(mark, StatusCode::kInvalidArgument,
           "YAML tags (" + Quote(tag) + ") are not allowed in sweep files");
    }
  }

  YNode* Add(const YAML::Mark& mark, YNode::Kind kind) {
    if (++nodes_ > limits_.max_nodes) {
      Fail(mark, StatusCode::kResourceExhausted,
           "sweep file has more than " + std::to_string(limits_.max_nodes) + " YAML nodes");
    }
    auto node = std::make_unique<YNode>();
    node->kind = kind;
    node->pos = ToPos(mark);
    YNode* raw = node.get();
    if (stack_.empty()) {
      root_ = std::move(node);
    } else {
      stack_.back()->children.push_back(std::move(node));
    }
    return raw;
  }

  void Open(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
            YNode::Kind kind) {
    CheckAnchor(mark, anchor);
    CheckTag(mark, tag);
    if (static_cast<int>(stack_.size()) >= limits_.max_depth) {
      Fail(mark, StatusCode::kInvalidArgument,
           "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    stack_.push_back(Add(mark, kind));
  }

  // Keys must be scalars, and each may appear once.
  void CheckKeys(const YNode& map) {
    std::map<std::string_view, SourcePos> seen;
    for (size_t i = 0; i < map.map_size(); ++i) {
      const YNode& key = map.key(i);
      if (!key.is_scalar()) {
        Fail(key.pos, StatusCode::kInvalidArgument,
             std::string("a map key must be a name, not ") + KindName(key.kind));
      }
      auto [it, inserted] = seen.emplace(key.text, key.pos);
      if (!inserted) {
        Fail(key.pos, StatusCode::kInvalidArgument,
             "duplicate key " + Quote(key.text) + " (first at " + PosString(it->second) + ")");
      }
    }
  }

  std::string prefix_;  // "FILE:"
  SweepLimits limits_;
  std::unique_ptr<YNode> root_;
  std::vector<YNode*> stack_;  // open collections, innermost last
  size_t nodes_ = 0;
};

// Runs yaml-cpp over `text` and returns the single document as a tree (null
// for an empty file). All exceptions stop here.
Result<std::unique_ptr<YNode>> ParseTree(std::string_view text, const std::string& prefix,
                                         const SweepLimits& limits) {
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    TreeBuilder builder(prefix, limits);
    if (!parser.HandleNextDocument(builder)) return std::unique_ptr<YNode>();
    std::unique_ptr<YNode> root = builder.TakeRoot();
    TreeBuilder rest(prefix, limits);
    if (parser.HandleNextDocument(rest)) {
      auto second = rest.TakeRoot();
      SourcePos pos = second ? second->pos : SourcePos{1, 1};
      return Status::InvalidArgument(prefix + PosString(pos) +
                                     ": a sweep file holds one YAML document, found another");
    }
    return root;
  } catch (const StopParse& stop) {
    return stop.status;
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(prefix + PosString(ToPos(e.mark)) + ": " + e.msg);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(prefix + "1:1: cannot parse: " + e.what());
  }
}

// ---------------------------------------------------------------------------
// Scalars

bool ParseYamlNumber(std::string_view s, double* out) {
  if (s.empty()) return false;
  std::string_view body = s;
  bool negative = false;
  if (body[0] == '+' || body[0] == '-') {
    negative = body[0] == '-';
    body.remove_prefix(1);
  }
  if (body == ".inf" || body == ".Inf" || body == ".INF") {
    *out = negative ? -std::numeric_limits<double>::infinity()
                    : std::numeric_limits<double>::infinity();
    return true;
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  // from_chars also reads "inf" and "nan", which YAML reads as strings.
  if (body.empty() || !(std::isdigit(static_cast<unsigned char>(body[0])) || body[0] == '.')) {
    return false;
  }
  double value = 0;
  auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), value);
  if (end != body.data() + body.size()) return false;
  if (ec == std::errc::result_out_of_range) {
    // Overflow reads as infinity (rejected later as non-finite), underflow
    // as zero; strtod tells the two apart.
    bool big = std::fabs(std::strtod(std::string(body).c_str(), nullptr)) >= 1.0;
    value = big ? std::numeric_limits<double>::infinity() : 0.0;
  } else if (ec != std::errc()) {
    return false;
  }
  *out = negative ? -value : value;
  return true;
}

// Plain scalars that read as numbers are numbers; everything else is text.
ParamValue ToParamValue(const YNode& node) {
  double number = 0;
  if (node.plain && ParseYamlNumber(node.text, &number)) return ParamValue::Number(number);
  return ParamValue::String(node.text);
}

// A list of plain numbers ([100, 200]) is a list value; false for anything
// else in the list.
bool ToListValue(const YNode& node, ParamValue* out) {
  std::vector<double> numbers;
  for (const auto& item : node.children) {
    double number = 0;
    if (!item->is_scalar() || !item->plain || !ParseYamlNumber(item->text, &number)) return false;
    numbers.push_back(number);
  }
  *out = ParamValue::List(std::move(numbers));
  return true;
}

// Labels an axis of maps. Each entry takes the fewest of its leading values
// (in file order) that no other entry starts with: {optimizer: madam} is
// "madam" and {optimizer: int_madam, bits: 12, ...} is "int_madam/12". Should
// two labels still coincide (entries that differ only in their keys), every
// entry is labelled in full as key=value pairs.
void AssignMapLabels(const std::vector<std::vector<std::pair<std::string, std::string>>>& parts,
                     std::vector<AxisValue>& values) {
  // How many entries start with each run of leading values. Entries hold at
  // most one value per run parameter, so this is O(entries x parameters).
  auto prefix = [&](size_t i, size_t width) {
    std::string key;
    for (size_t k = 0; k < width; ++k) key += parts[i][k].second + '\x1f';
    return key;
  };
  std::map<std::string, size_t> starts;
  for (size_t i = 0; i < parts.size(); ++i) {
    for (size_t width = 1; width <= parts[i].size(); ++width) ++starts[prefix(i, width)];
  }
  std::set<std::string> seen;
  bool distinct = true;
  for (size_t i = 0; i < parts.size(); ++i) {
    size_t width = 1;
    while (width < parts[i].size() && starts[prefix(i, width)] > 1) ++width;
    std::string label;
    for (size_t k = 0; k < width; ++k) label += (k ? "/" : "") + parts[i][k].second;
    distinct = seen.insert(label).second && distinct;
    values[i].label = std::move(label);
  }
  if (distinct) return;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string label;
    for (size_t k = 0; k < parts[i].size(); ++k) {
      label += (k ? "/" : "") + parts[i][k].first + "=" + parts[i][k].second;
    }
    values[i].label = std::move(label);
  }
}

// ---------------------------------------------------------------------------
// The sweep schema

// Reads a YNode tree into a SweepSpec. Every check returns a Status whose
// message starts with "FILE:LINE:COL:" and names the key.
class SweepReader {
 public:
  SweepReader(std::string prefix, const SweepLimits& limits)
      : prefix_(std::move(prefix)), limits_(limits) {}

  Result<SweepSpec> Read(const YNode* root);

 private:
  // Where a parameter was set: for "is set twice" messages and for errors
  // found only when parameters meet in a grid cell.
  struct Owner {
    std::string where;  // "params.lr", "grid.precision"
    SourcePos pos;
  };
  // An axis as read, before the cap check: a range axis over the cap keeps
  // only its declared count, so a 10^9-point range is never generated.
  struct PendingAxis {
    Axis axis;
    size_t declared_size = 0;
  };

  Status Error(SourcePos pos, const std::string& message) const {
    return Status::InvalidArgument(prefix_ + PosString(pos) + ": " + message);
  }
  Status Exhausted(SourcePos pos, const std::string& message) const {
    return Status::ResourceExhausted(prefix_ + PosString(pos) + ": " + message);
  }
  Status UnknownKey(const YNode& key, const std::string& where,
                    const std::vector<std::string_view>& known) const;

  Status ExpectKind(const YNode& node, YNode::Kind kind, const std::string& where,
                    const std::string& shape) const {
    if (node.kind == kind) return Status::Ok();
    return Error(node.pos, where + " must be " + shape + ", got " + KindName(node.kind));
  }
  Result<std::string> ReadText(const YNode& node, const std::string& where) const;
  Result<int64_t> ReadInteger(const YNode& node, const std::string& where, int64_t lo,
                              int64_t hi) const;
  Result<double> ReadFinite(const YNode& node, const std::string& where) const;

  Status ValidateParam(const std::string& name, const ParamValue& value, SourcePos pos,
                       const std::string& where) const;
  // A parameter's value under params: or in an axis entry: a scalar, or a
  // list of numbers.
  Result<ParamValue> ReadValue(const YNode& node, const std::string& where) const;
  Status ReadStage(const YNode& key, const YNode& value);
  Status ClaimParam(const std::string& name, const std::string& where, SourcePos pos);
  Status SetFixed(const std::string& name, const YNode& value, const std::string& where);

  Status ReadMetric(const YNode& node);
  Status ReadParams(const YNode& node);
  Status ReadResources(const YNode& node);
  Status ReadSeeds(const YNode& node);
  Status ReadGrid(const YNode& node);
  Status ReadAxis(const YNode& key, const YNode& value);
  Status ReadScalarAxis(const std::string& name, const YNode& list, PendingAxis& out);
  Status ReadMapAxis(const std::string& name, const YNode& list, PendingAxis& out);
  Status ReadRangeAxis(const std::string& name, const YNode& range, PendingAxis& out);
  Status CheckRunCount(SourcePos grid_pos);
  Status CheckCells() const;
  Status FillMetricDefault(SourcePos pos);

  std::string prefix_;
  SweepLimits limits_;
  SweepSpec spec_;
  std::vector<PendingAxis> axes_;
  std::map<std::string, Owner> owners_;  // run parameter -> who sets it
  SourcePos seeds_pos_;
  SourcePos stage_pos_;
  bool has_metric_ = false;
  bool has_name_ = false;
};

const std::vector<std::string_view>& TopLevelKeys() {
  static const std::vector<std::string_view> keys = {
      "name",   "description", "task",  "metric",         "epochs",       "batch_size",
      "params", "grid",        "seeds", "max_concurrent", "max_attempts", "resources",
      "recipe", "figure",      "table"};
  return keys;
}

Status SweepReader::UnknownKey(const YNode& key, const std::string& where,
                               const std::vector<std::string_view>& known) const {
  std::string message = "unknown key " + Quote(key.text) + (where.empty() ? "" : " in " + where);
  std::string close = &known == &KnownRunParams() ? SuggestRunParam(key.text)
                                                  : ClosestName(key.text, known);
  if (!close.empty()) return Error(key.pos, message + " (did you mean " + close + "?)");
  if (where.empty()) {
    // A run parameter written at the top level.
    if (IsRunParam(key.text)) {
      return Error(key.pos, message + ": " + key.text +
                                " is a run parameter; set it under params: or on the grid:");
    }
    std::string param = SuggestRunParam(key.text);
    if (!param.empty()) {
      return Error(key.pos, message + " (did you mean the run parameter " + param +
                                "? run parameters go under params: or grid:)");
    }
  }
  std::string list;
  for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
  return Error(key.pos, message + " (known: " + list + ")");
}

Result<std::string> SweepReader::ReadText(const YNode& node, const std::string& where) const {
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kScalar, where, "a string"));
  if (node.text.empty()) return Error(node.pos, where + " must not be empty");
  return node.text;
}

Result<int64_t> SweepReader::ReadInteger(const YNode& node, const std::string& where, int64_t lo,
                                         int64_t hi) const {
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kScalar, where, "an integer"));
  ParamValue v = ToParamValue(node);
  if (!v.is_number() || !std::isfinite(v.number) || v.number != std::floor(v.number) ||
      v.number < static_cast<double>(lo) || v.number > static_cast<double>(hi)) {
    return Error(node.pos, where + " must be an integer in " + std::to_string(lo) + ".." +
                               std::to_string(hi) + ", got " +
                               (v.is_number() ? v.ToString() : Quote(v.text)));
  }
  return static_cast<int64_t>(v.number);
}

Result<double> SweepReader::ReadFinite(const YNode& node, const std::string& where) const {
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kScalar, where, "a number"));
  ParamValue v = ToParamValue(node);
  if (!v.is_number()) return Error(node.pos, where + " must be a number, got " + Quote(v.text));
  if (!std::isfinite(v.number)) {
    return Error(node.pos, where + " must be finite, got " + v.ToString());
  }
  return v.number;
}

// Checks one parameter value on its own, wherever it came from, so the error
// points at the value in the file. RunConfigFromParams holds the rules; the
// other parameters are neutral placeholders.
Status SweepReader::ValidateParam(const std::string& name, const ParamValue& value,
                                  SourcePos pos, const std::string& where) const {
  if (!value.is_number()) {
    // No valid parameter value is long or holds control characters; refuse
    // such text before any message echoes it whole.
    bool printable = value.text.size() <= 128;
    for (unsigned char c : value.text) printable = printable && c >= 0x20 && c < 0x7f;
    if (!printable) {
      return Error(pos, where + ": " + name + " cannot be " + Quote(value.text));
    }
  }
  Status checked = CheckRunParamValue(name, value);
  if (!checked.ok()) return Error(pos, where + ": " + checked.message());
  return Status::Ok();
}

Result<ParamValue> SweepReader::ReadValue(const YNode& node, const std::string& where) const {
  if (node.is_null()) return Error(node.pos, where + " has no value");
  if (node.is_sequence()) {
    ParamValue list;
    if (!ToListValue(node, &list)) {
      return Error(node.pos, where + " must be a single value or a list of numbers");
    }
    return list;
  }
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kScalar, where,
                                   "a single value (a number or a name) or a list of numbers"));
  return ToParamValue(node);
}

// recipe: paper | none; figure: 1; table: 1 | 2 (ARCHITECTURE.md section 4).
Status SweepReader::ReadStage(const YNode& key, const YNode& value) {
  if (key.text == "recipe") {
    auto recipe = ReadText(value, "recipe");
    if (!recipe.ok()) return recipe.status();
    if (*recipe != "paper" && *recipe != "none") {
      return Error(value.pos, "recipe must be paper (the task's recipe, the default) or none "
                              "(the paper's defaults only), got " + Quote(*recipe));
    }
    MADAM_RETURN_IF_ERROR(ClaimParam("recipe", "recipe", value.pos));
    spec_.use_recipe = *recipe == "paper";
    if (!spec_.use_recipe) spec_.params["recipe"] = ParamValue::String("none");
    return Status::Ok();
  }
  if (spec_.stage != SweepStage::kNone) {
    return Error(key.pos, key.text + ": a sweep feeds one report; " +
                              std::string(StageName(spec_.stage)) + " is already set at " +
                              PosString(stage_pos_));
  }
  const bool figure = key.text == "figure";
  auto n = ReadInteger(value, key.text, 1, figure ? 1 : 2);
  if (!n.ok()) {
    return Error(value.pos, figure ? "figure must be 1 (the paper's Figure 1: lr sensitivity)"
                                   : "table must be 1 (Madam vs tuned baselines) or 2 (bit "
                                     "widths)");
  }
  spec_.stage = figure ? SweepStage::kFigure1 : *n == 1 ? SweepStage::kTable1 : SweepStage::kTable2;
  stage_pos_ = key.pos;
  return Status::Ok();
}

// Records that `where` sets run parameter `name`; a parameter has one owner.
Status SweepReader::ClaimParam(const std::string& name, const std::string& where,
                               SourcePos pos) {
  auto [it, inserted] = owners_.emplace(name, Owner{where, pos});
  if (inserted || it->second.where == where) return Status::Ok();
  return Error(pos, where + ": " + name + " is already set by " + it->second.where + " (" +
                        PosString(it->second.pos) +
                        "); a parameter is either fixed or on one grid axis");
}

Status SweepReader::SetFixed(const std::string& name, const YNode& value,
                             const std::string& where) {
  auto v = ReadValue(value, where);
  if (!v.ok()) return v.status();
  MADAM_RETURN_IF_ERROR(ValidateParam(name, *v, value.pos, where));
  MADAM_RETURN_IF_ERROR(ClaimParam(name, where, value.pos));
  spec_.params[name] = *v;
  return Status::Ok();
}

Status SweepReader::ReadMetric(const YNode& node) {
  MADAM_RETURN_IF_ERROR(
      ExpectKind(node, YNode::Kind::kMap, "metric", "a map {name: ..., goal: minimize|maximize}"));
  static const std::vector<std::string_view> keys = {"name", "goal"};
  for (size_t i = 0; i < node.map_size(); ++i) {
    const YNode& key = node.key(i);
    const YNode& value = node.value(i);
    if (key.text == "name") {
      auto name = ReadText(value, "metric.name");
      if (!name.ok()) return name.status();
      if (name->size() > 128) return Error(value.pos, "metric.name is too long");
      spec_.metric_name = *name;
    } else if (key.text == "goal") {
      auto goal = ReadText(value, "metric.goal");
      if (!goal.ok()) return goal.status();
      if (*goal != "minimize" && *goal != "maximize") {
        return Error(value.pos, "metric.goal must be minimize or maximize, got " + Quote(*goal));
      }
      spec_.metric_goal = *goal;
    } else {
      return UnknownKey(key, "metric", keys);
    }
  }
  if (spec_.metric_name.empty()) return Error(node.pos, "metric.name is missing");
  if (spec_.metric_goal.empty()) {
    auto goal = GoalOfMetric(spec_.metric_name);
    spec_.metric_goal = std::string(GoalName(goal.value_or(MetricGoal::kMinimize)));
  }
  has_metric_ = true;
  return Status::Ok();
}

Status SweepReader::ReadParams(const YNode& node) {
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kMap, "params",
                                   "a map of run parameter to value"));
  for (size_t i = 0; i < node.map_size(); ++i) {
    const YNode& key = node.key(i);
    if (key.text == "seed") {
      return Error(key.pos, "params.seed: seeds are set with the top-level seeds: list");
    }
    if (!IsRunParam(key.text)) return UnknownKey(key, "params", KnownRunParams());
    MADAM_RETURN_IF_ERROR(SetFixed(key.text, node.value(i), "params." + key.text));
  }
  return Status::Ok();
}

Status SweepReader::ReadResources(const YNode& node) {
  MADAM_RETURN_IF_ERROR(
      ExpectKind(node, YNode::Kind::kMap, "resources", "a map {device: ..., devices: N}"));
  static const std::vector<std::string_view> keys = {"device", "devices"};
  for (size_t i = 0; i < node.map_size(); ++i) {
    const YNode& key = node.key(i);
    if (key.text == "devices") {
      // Every run's `devices` parameter (ARCHITECTURE.md section 3): a
      // data-parallel run on that many devices of one worker.
      MADAM_RETURN_IF_ERROR(SetFixed("devices", node.value(i), "resources.devices"));
      continue;
    }
    if (key.text != "device") return UnknownKey(key, "resources", keys);
    auto device = ReadText(node.value(i), "resources.device");
    if (!device.ok()) return device.status();
    if (*device != "any" && *device != "cpu" && *device != "cuda") {
      return Error(node.value(i).pos,
                   "resources.device must be any, cpu or cuda, got " + Quote(*device));
    }
    spec_.device = *device;
  }
  return Status::Ok();
}

Status SweepReader::ReadSeeds(const YNode& node) {
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kSequence, "seeds",
                                   "a list of integers, e.g. [0, 1, 2]"));
  if (node.children.empty()) return Error(node.pos, "seeds must not be empty");
  std::map<int64_t, SourcePos> seen;
  spec_.seeds.clear();
  for (size_t i = 0; i < node.children.size(); ++i) {
    const YNode& item = *node.children[i];
    std::string where = "seeds[" + std::to_string(i) + "]";
    MADAM_RETURN_IF_ERROR(ExpectKind(item, YNode::Kind::kScalar, where, "an integer"));
    ParamValue v = ToParamValue(item);
    MADAM_RETURN_IF_ERROR(ValidateParam("seed", v, item.pos, where));
    auto seed = static_cast<int64_t>(v.number);
    auto [it, inserted] = seen.emplace(seed, item.pos);
    if (!inserted) {
      return Error(item.pos, where + ": seed " + v.ToString() + " repeats (first at " +
                                 PosString(it->second) + ")");
    }
    spec_.seeds.push_back(seed);
  }
  seeds_pos_ = node.pos;
  return Status::Ok();
}

Status SweepReader::ReadGrid(const YNode& node) {
  MADAM_RETURN_IF_ERROR(ExpectKind(node, YNode::Kind::kMap, "grid",
                                   "a map of axis name to values"));
  for (size_t i = 0; i < node.map_size(); ++i) {
    MADAM_RETURN_IF_ERROR(ReadAxis(node.key(i), node.value(i)));
  }
  return Status::Ok();
}

Status SweepReader::ReadAxis(const YNode& key, const YNode& value) {
  const std::string& name = key.text;
  std::string where = "grid." + name;
  if (name == "seed" || name == "seeds") {
    return Error(key.pos, where + ": seeds are not a grid axis; use the top-level seeds: list");
  }
  if (name.empty() || name.size() > 64) {
    return Error(key.pos, "grid axis names must be 1 to 64 characters, got " + Quote(name));
  }
  for (unsigned char c : name) {
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.')) {
      return Error(key.pos, "grid axis name " + Quote(name) +
                                " may hold only letters, digits, '_', '-' and '.'");
    }
  }
  PendingAxis pending;
  pending.axis.name = name;
  pending.axis.pos = key.pos;

  bool is_range = value.is_map() && value.map_size() == 1 &&
                  (value.key(0).text == "log10" || value.key(0).text == "linear");
  bool is_map_list = value.is_sequence() && !value.children.empty() &&
                     value.children.front()->is_map();
  if (!is_map_list && !IsRunParam(name)) {
    // Only an axis of maps may take a free name; scalar and range axes set
    // the parameter they are named after.
    std::string close = SuggestRunParam(name);
    return Error(key.pos, where + ": unknown run parameter " + Quote(name) +
                              (close.empty() ? "" : " (did you mean " + close + "?)") +
                              "; an axis of scalars or a range must be named after a run "
                              "parameter, and an axis of maps sets the keys of its entries");
  }
  if (is_range) {
    MADAM_RETURN_IF_ERROR(ReadRangeAxis(name, value, pending));
  } else if (value.is_sequence()) {
    if (value.children.empty()) return Error(value.pos, where + " has no values");
    if (is_map_list) {
      MADAM_RETURN_IF_ERROR(ReadMapAxis(name, value, pending));
    } else {
      MADAM_RETURN_IF_ERROR(ReadScalarAxis(name, value, pending));
    }
  } else {
    return Error(value.pos, where + " must be a list of values, a list of maps, "
                                    "{log10: {from, to, count}} or {linear: {from, to, "
                                    "count}}, got " + std::string(KindName(value.kind)) +
                                    (value.is_scalar() ? "; a single value goes under params:"
                                                       : ""));
  }
  axes_.push_back(std::move(pending));
  return Status::Ok();
}

Status SweepReader::ReadScalarAxis(const std::string& name, const YNode& list,
                                   PendingAxis& out) {
  std::string where = "grid." + name;
  MADAM_RETURN_IF_ERROR(ClaimParam(name, where, list.pos));
  std::map<std::string, SourcePos> seen;
  for (size_t i = 0; i < list.children.size(); ++i) {
    const YNode& item = *list.children[i];
    std::string item_where = where + "[" + std::to_string(i) + "]";
    if (item.is_null()) return Error(item.pos, item_where + " has no value");
    MADAM_RETURN_IF_ERROR(ExpectKind(item, YNode::Kind::kScalar, item_where,
                                     "a single value, like the other entries of " + where));
    ParamValue v = ToParamValue(item);
    MADAM_RETURN_IF_ERROR(ValidateParam(name, v, item.pos, item_where));
    AxisValue value{v.ToString(), {{name, v}}, item.pos};
    auto [it, inserted] = seen.emplace(value.label, item.pos);
    if (!inserted) {
      return Error(item.pos, item_where + ": value " + Quote(value.label) + " repeats (first at " +
                                 PosString(it->second) + ")");
    }
    out.axis.values.push_back(std::move(value));
  }
  out.declared_size = out.axis.values.size();
  return Status::Ok();
}

Status SweepReader::ReadMapAxis(const std::string& name, const YNode& list, PendingAxis& out) {
  std::string where = "grid." + name;
  // Each entry's values in file order, for the labels.
  std::vector<std::vector<std::pair<std::string, std::string>>> parts;
  for (size_t i = 0; i < list.children.size(); ++i) {
    const YNode& entry = *list.children[i];
    std::string entry_where = where + "[" + std::to_string(i) + "]";
    MADAM_RETURN_IF_ERROR(ExpectKind(entry, YNode::Kind::kMap, entry_where,
                                     "a map of run parameters, like the first entry"));
    if (entry.map_size() == 0) return Error(entry.pos, entry_where + " sets no parameters");
    AxisValue value;
    value.pos = entry.pos;
    std::vector<std::pair<std::string, std::string>> entry_parts;
    for (size_t k = 0; k < entry.map_size(); ++k) {
      const YNode& key = entry.key(k);
      const YNode& item = entry.value(k);
      std::string item_where = entry_where + "." + key.text;
      if (key.text == "seed") {
        return Error(key.pos, item_where + ": seeds are set with the top-level seeds: list");
      }
      if (!IsRunParam(key.text)) return UnknownKey(key, entry_where, KnownRunParams());
      auto read = ReadValue(item, item_where);
      if (!read.ok()) return read.status();
      const ParamValue& v = *read;
      MADAM_RETURN_IF_ERROR(ValidateParam(key.text, v, item.pos, item_where));
      MADAM_RETURN_IF_ERROR(ClaimParam(key.text, where, key.pos));
      entry_parts.emplace_back(key.text, v.ToString());
      value.params[key.text] = v;
    }
    parts.push_back(std::move(entry_parts));
    out.axis.values.push_back(std::move(value));
  }
  // Two entries that set the same parameters to the same values would be
  // one cell twice.
  std::map<std::string, size_t> entries;
  for (size_t i = 0; i < out.axis.values.size(); ++i) {
    std::string canonical;
    for (const auto& [k, v] : out.axis.values[i].params) {
      canonical += k + '=' + v.ToString() + (v.is_string() ? "$" : "#") + '\x1f';
    }
    auto [it, inserted] = entries.emplace(std::move(canonical), i);
    if (!inserted) {
      return Error(out.axis.values[i].pos,
                   where + "[" + std::to_string(i) + "] repeats entry " +
                       std::to_string(it->second) + " (" +
                       PosString(out.axis.values[it->second].pos) + ")");
    }
  }
  AssignMapLabels(parts, out.axis.values);
  out.declared_size = out.axis.values.size();
  return Status::Ok();
}

Status SweepReader::ReadRangeAxis(const std::string& name, const YNode& range,
                                  PendingAxis& out) {
  const std::string kind = range.key(0).text;  // log10 | linear
  const YNode& body = range.value(0);
  std::string where = "grid." + name + "." + kind;
  MADAM_RETURN_IF_ERROR(ClaimParam(name, "grid." + name, range.pos));
  MADAM_RETURN_IF_ERROR(
      ExpectKind(body, YNode::Kind::kMap, where, "a map {from: ..., to: ..., count: ...}"));
  static const std::vector<std::string_view> keys = {"from", "to", "count"};
  const YNode* from_node = nullptr;
  const YNode* to_node = nullptr;
  const YNode* count_node = nullptr;
  for (size_t i = 0; i < body.map_size(); ++i) {
    const YNode& key = body.key(i);
    if (key.text == "from") {
      from_node = &body.value(i);
    } else if (key.text == "to") {
      to_node = &body.value(i);
    } else if (key.text == "count") {
      count_node = &body.value(i);
    } else {
      return UnknownKey(key, where, keys);
    }
  }
  if (!from_node) return Error(body.pos, where + ".from is missing");
  if (!to_node) return Error(body.pos, where + ".to is missing");
  if (!count_node) return Error(body.pos, where + ".count is missing");
  auto from = ReadFinite(*from_node, where + ".from");
  if (!from.ok()) return from.status();
  auto to = ReadFinite(*to_node, where + ".to");
  if (!to.ok()) return to.status();
  // The count may be far over the cap: keep it (saturated) for the cap's
  // message and generate nothing.
  MADAM_RETURN_IF_ERROR(ExpectKind(*count_node, YNode::Kind::kScalar, where + ".count",
                                   "a positive integer"));
  ParamValue count = ToParamValue(*count_node);
  if (!count.is_number() || !(count.number >= 1) || count.number != std::floor(count.number)) {
    return Error(count_node->pos, where + ".count must be a positive integer, got " +
                                      (count.is_number() ? count.ToString() : Quote(count.text)));
  }
  constexpr double kSizeMax = static_cast<double>(std::numeric_limits<size_t>::max());
  out.declared_size = count.number >= kSizeMax ? std::numeric_limits<size_t>::max()
                                               : static_cast<size_t>(count.number);
  if (out.declared_size > limits_.max_runs) return Status::Ok();

  const bool log = kind == "log10";
  const size_t n = out.declared_size;
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < n; ++i) {
    // Ends are exact: the last point is `to` itself, not from + (n-1)*step.
    double t = n == 1 ? *from
               : i + 1 == n ? *to
                            : *from + (*to - *from) * static_cast<double>(i) /
                                          static_cast<double>(n - 1);
    double x = log ? std::pow(10.0, t) : t;
    ParamValue v = ParamValue::Number(x);
    std::string item_where = "grid." + name + "[" + std::to_string(i) + "]";
    MADAM_RETURN_IF_ERROR(ValidateParam(name, v, range.pos, item_where + " (" + kind + ")"));
    AxisValue value{v.ToString(), {{name, v}}, range.pos};
    auto [it, inserted] = seen.emplace(value.label, i);
    if (!inserted) {
      return Error(range.pos, item_where + ": value " + value.label + " repeats point " +
                                  std::to_string(it->second) + "; use fewer points or a "
                                  "wider range");
    }
    out.axis.values.push_back(std::move(value));
  }
  return Status::Ok();
}

// Multiplies the grid out without expanding it.
Status SweepReader::CheckRunCount(SourcePos grid_pos) {
  size_t total = 1;
  bool overflow = false;
  std::string shape;
  for (const auto& a : axes_) {
    overflow = overflow || __builtin_mul_overflow(total, a.declared_size, &total);
    shape += std::to_string(a.declared_size) + " " + a.axis.name + " x ";
  }
  size_t seeds = spec_.seeds.size();
  overflow = overflow || __builtin_mul_overflow(total, seeds, &total);
  shape += std::to_string(seeds) + (seeds == 1 ? " seed" : " seeds");
  if (!overflow && total <= limits_.max_runs) return Status::Ok();
  std::string count = overflow ? "more than " + std::to_string(std::numeric_limits<size_t>::max())
                               : std::to_string(total);
  SourcePos pos = axes_.empty() ? seeds_pos_ : grid_pos;
  return Exhausted(pos, std::string(axes_.empty() ? "seeds" : "grid") + ": grid has " + count +
                            " runs (" + shape + "), over the limit of " +
                            std::to_string(limits_.max_runs));
}

// Advances an odometer over the grid's cells, the last axis turning fastest.
// Returns false after the last cell.
bool NextCell(const std::vector<Axis>& axes, std::vector<size_t>& at) {
  for (size_t a = axes.size(); a > 0; --a) {
    if (++at[a - 1] < axes[a - 1].values.size()) return true;
    at[a - 1] = 0;
  }
  return false;
}

std::string CellName(const std::vector<Axis>& axes, const std::vector<size_t>& at) {
  std::string out;
  for (size_t a = 0; a < axes.size(); ++a) {
    out += (a ? ", " : "") + axes[a].name + "=" + axes[a].values[at[a]].label;
  }
  return out;
}

// Parameters meet only in a grid cell: resolves every cell (the cap keeps
// them few) the way a worker will, so that no run the coordinator stores can
// fail. An error points at the value at fault when the file sets it, else at
// the cell's value on the last axis. Every parameter the file sets must
// apply to some cell's task and optimiser.
Status SweepReader::CheckCells() const {
  const auto& axes = spec_.axes;
  std::vector<size_t> at(axes.size(), 0);
  ResolveOptions options;
  options.schedule =
      spec_.stage == SweepStage::kFigure1 ? ScheduleRule::kFixed : ScheduleRule::kRecipe;
  options.drop_inapplicable = true;
  std::set<std::string> applied;
  RunParams params;
  while (true) {
    params = spec_.params;
    params["seed"] = ParamValue::Number(static_cast<double>(spec_.seeds.front()));
    for (size_t a = 0; a < axes.size(); ++a) {
      for (const auto& [k, v] : axes[a].values[at[a]].params) params[k] = v;
    }
    std::string bad;
    auto resolved = ResolveConfig(params, options, &bad);
    if (!resolved.ok()) {
      // The value at fault when this file sets it; else (a required
      // parameter missing, a recipe value) the cell itself.
      SourcePos pos = axes.empty() ? SourcePos{1, 1} : axes.back().values[at.back()].pos;
      bool on_axis = false;
      for (size_t a = 0; a < axes.size() && !on_axis; ++a) {
        if (axes[a].values[at[a]].params.count(bad)) {
          pos = axes[a].values[at[a]].pos;
          on_axis = true;
        }
      }
      if (!on_axis && spec_.params.count(bad)) {
        if (auto it = owners_.find(bad); it != owners_.end()) pos = it->second.pos;
      }
      std::string cell = axes.empty() ? "every run" : "grid cell " + CellName(axes, at);
      return Error(pos, cell + ": " + resolved.status().message());
    }
    const TaskInfo* task = FindTask(resolved->task);
    const OptimizerInfo* optimizer = FindOptimizer(resolved->optimizer);
    for (const auto& [name, value] : params) {
      (void)value;
      const RunParamInfo* info = FindRunParam(name);
      if (info && task && optimizer && ParamApplies(*info, *task, *optimizer)) applied.insert(name);
    }
    if (!NextCell(axes, at)) break;
  }
  for (const auto& [name, owner] : owners_) {
    if (applied.count(name)) continue;
    const RunParamInfo* info = FindRunParam(name);
    std::vector<std::string_view> names;
    std::string kind;
    if (info && info->feature != 0) {
      for (const auto& t : KnownTasks()) {
        if (t.has(static_cast<TaskFeature>(info->feature))) names.push_back(t.name);
      }
      kind = names.size() == 1 ? "task " : "tasks ";
    } else if (info) {
      names = info->optimizers;
      kind = names.size() == 1 ? "optimizer " : "optimizers ";
    }
    std::string owners = kind;
    for (size_t i = 0; i < names.size(); ++i) owners += (i ? ", " : "") + std::string(names[i]);
    return Error(owner.pos, owner.where + ": " + name +
                                " does not apply to any run of this sweep (it is a parameter of " +
                                owners + ")");
  }
  return Status::Ok();
}

Status SweepReader::FillMetricDefault(SourcePos pos) {
  if (has_metric_) return Status::Ok();
  spec_.metric_goal = "minimize";
  std::set<std::string_view> metrics;
  auto add_task = [&](const ParamValue& v) {
    if (const TaskInfo* task = FindTask(v.text)) metrics.insert(task->metric);
  };
  if (auto it = spec_.params.find("task"); it != spec_.params.end()) add_task(it->second);
  for (const auto& axis : spec_.axes) {
    for (const auto& value : axis.values) {
      if (auto it = value.params.find("task"); it != value.params.end()) add_task(it->second);
    }
  }
  if (metrics.size() > 1) {
    return Error(pos, "metric: the tasks on this grid report different test metrics; set "
                      "metric: {name: ..., goal: ...}");
  }
  spec_.metric_name = metrics.empty() ? "test/error" : std::string(*metrics.begin());
  return Status::Ok();
}

Result<SweepSpec> SweepReader::Read(const YNode* root) {
  if (root == nullptr || root->is_null()) {
    return Error({1, 1}, "the sweep file is empty; it needs at least name, task and grid");
  }
  if (!root->is_map()) {
    return Error(root->pos, std::string("a sweep file is a map of keys (name, task, grid, ...), "
                                        "got ") + KindName(root->kind));
  }
  SourcePos grid_pos = root->pos;
  for (size_t i = 0; i < root->map_size(); ++i) {
    const YNode& key = root->key(i);
    const YNode& value = root->value(i);
    const std::string& k = key.text;
    if (k == "name") {
      auto name = ReadText(value, "name");
      if (!name.ok()) return name.status();
      if (name->size() > 200) return Error(value.pos, "name is longer than 200 characters");
      for (unsigned char c : *name) {
        if (c < 0x20 || c == 0x7f) {
          return Error(value.pos, "name must not hold control characters");
        }
      }
      spec_.name = *name;
      has_name_ = true;
    } else if (k == "description") {
      if (!value.is_null()) {
        MADAM_RETURN_IF_ERROR(ExpectKind(value, YNode::Kind::kScalar, "description", "text"));
        spec_.description = value.text;
      }
    } else if (k == "task" || k == "epochs" || k == "batch_size") {
      MADAM_RETURN_IF_ERROR(SetFixed(k, value, k));
      if (k == "task") spec_.task = spec_.params["task"].text;
    } else if (k == "metric") {
      MADAM_RETURN_IF_ERROR(ReadMetric(value));
    } else if (k == "params") {
      MADAM_RETURN_IF_ERROR(ReadParams(value));
    } else if (k == "grid") {
      grid_pos = key.pos;
      MADAM_RETURN_IF_ERROR(ReadGrid(value));
    } else if (k == "seeds") {
      MADAM_RETURN_IF_ERROR(ReadSeeds(value));
    } else if (k == "max_concurrent") {
      auto v = ReadInteger(value, "max_concurrent", 0, 1000000);
      if (!v.ok()) return v.status();
      spec_.max_concurrent = *v;
    } else if (k == "max_attempts") {
      auto v = ReadInteger(value, "max_attempts", 1, 100);
      if (!v.ok()) return v.status();
      spec_.max_attempts = *v;
    } else if (k == "resources") {
      MADAM_RETURN_IF_ERROR(ReadResources(value));
    } else if (k == "recipe" || k == "figure" || k == "table") {
      MADAM_RETURN_IF_ERROR(ReadStage(key, value));
    } else {
      return UnknownKey(key, "", TopLevelKeys());
    }
  }
  if (!has_name_) return Error(root->pos, "name is missing: every sweep needs a name");
  if (spec_.task.empty() && owners_.count("task") == 0) {
    return Error(root->pos, "task is missing: set task: or put task on the grid");
  }
  if (owners_.count("optimizer") == 0) {
    return Error(root->pos, "optimizer is missing: set it under params: or on the grid:");
  }
  if (spec_.seeds.empty()) {
    spec_.seeds = {0};
    seeds_pos_ = root->pos;
  }
  MADAM_RETURN_IF_ERROR(CheckRunCount(grid_pos));
  for (auto& pending : axes_) spec_.axes.push_back(std::move(pending.axis));
  axes_.clear();
  MADAM_RETURN_IF_ERROR(FillMetricDefault(root->pos));
  MADAM_RETURN_IF_ERROR(CheckCells());
  // Written into the runs' own parameters, so each stored run resolves the
  // same way wherever it is resolved (common/recipe.h).
  if (spec_.stage == SweepStage::kFigure1) {
    spec_.params["lr_schedule"] = ParamValue::String("constant");
    spec_.params["warmup_epochs"] = ParamValue::Number(0);
  }
  return std::move(spec_);
}

// A file name fit to start every message: printable, at most 200 bytes.
std::string MessagePrefix(std::string_view filename) {
  std::string out;
  for (size_t i = 0; i < filename.size() && i < 200; ++i) {
    unsigned char c = static_cast<unsigned char>(filename[i]);
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  }
  if (out.empty()) out = "<sweep>";
  return out + ":";
}

}  // namespace

std::string_view StageName(SweepStage stage) {
  switch (stage) {
    case SweepStage::kFigure1: return "figure: 1";
    case SweepStage::kTable1: return "table: 1";
    case SweepStage::kTable2: return "table: 2";
    case SweepStage::kNone: break;
  }
  return "";
}

Result<SweepSpec> ParseSweepSpec(std::string_view text, std::string_view filename,
                                 const SweepLimits& limits) {
  const std::string prefix = MessagePrefix(filename);
  if (text.size() > limits.max_bytes) {
    return Status::ResourceExhausted(prefix + "1:1: file is " + std::to_string(text.size()) +
                                     " bytes, over the limit of " +
                                     std::to_string(limits.max_bytes));
  }
  auto tree = ParseTree(text, prefix, limits);
  if (!tree.ok()) return tree.status();
  SweepReader reader(prefix, limits);
  return reader.Read(tree->get());
}

size_t CountRuns(const SweepSpec& spec) {
  size_t total = spec.seeds.size();
  for (const auto& axis : spec.axes) {
    if (__builtin_mul_overflow(total, axis.values.size(), &total)) {
      return std::numeric_limits<size_t>::max();
    }
  }
  return total;
}

std::vector<ExpandedRun> ExpandSweep(const SweepSpec& spec) {
  std::vector<ExpandedRun> runs;
  const size_t total = CountRuns(spec);
  if (total == 0) return runs;
  runs.reserve(total);
  const auto& axes = spec.axes;
  for (int64_t seed : spec.seeds) {
    std::vector<size_t> at(axes.size(), 0);
    while (true) {
      ExpandedRun run;
      run.index = static_cast<int64_t>(runs.size());
      run.params = spec.params;
      for (size_t a = 0; a < axes.size(); ++a) {
        const AxisValue& value = axes[a].values[at[a]];
        for (const auto& [k, v] : value.params) run.params[k] = v;
        run.labels[axes[a].name] = value.label;
      }
      run.params["seed"] = ParamValue::Number(static_cast<double>(seed));
      runs.push_back(std::move(run));
      if (!NextCell(axes, at)) break;
    }
  }
  return runs;
}

}  // namespace madam
