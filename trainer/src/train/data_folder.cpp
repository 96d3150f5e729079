#include "train/data_folder.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <set>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "train/dataset.hpp"

namespace bulkhead {
namespace fs = std::filesystem;
using Json = nlohmann::json;
namespace {

// Keys of EveryDream2's caption and folder files that Bulkhead reads.
const std::set<std::string> kUsedKeys = {"main_prompt", "caption", "tags", "multiply"};

// Those it does not, and why: said once per run, never ignored silently.
const std::map<std::string, std::string> kUnusedKeys = {
    {"flip_p", "Bulkhead does not flip images (use a transform_pil_image plugin)"},
    {"cond_dropout", "caption dropout is the run's cond_dropout, not per folder or image"},
    {"shuffle_tags", "Bulkhead does not shuffle tags (the caption_tag_shuffle plugin does)"},
    {"batch_id", "Bulkhead has no batch groups: every batch mixes the whole dataset"},
    {"loss_scale", "every image weighs the same in the loss"},
    {"rating", "Bulkhead has no rated dataset"},
    {"max_caption_length", "captions are cut at the run's max_tokens"},
};

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string trim(const std::string& text) {
  auto first = text.find_first_not_of(" \t\r\n");
  auto last = text.find_last_not_of(" \t\r\n");
  return first == std::string::npos ? "" : text.substr(first, last - first + 1);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError("cannot read " + path.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Json yaml_to_json(const YAML::Node& node) {
  if (node.IsMap()) {
    Json object = Json::object();
    for (const auto& entry : node) object[entry.first.as<std::string>()] = yaml_to_json(entry.second);
    return object;
  }
  if (node.IsSequence()) {
    Json array = Json::array();
    for (const auto& item : node) array.push_back(yaml_to_json(item));
    return array;
  }
  return node.IsScalar() ? Json(node.as<std::string>()) : Json();
}

// A .yaml/.yml/.json caption or folder file as JSON (YAML scalars come as strings).
Json read_settings_file(const fs::path& path) {
  try {
    Json settings = path.extension() == ".json" ? Json::parse(read_text(path)) : yaml_to_json(YAML::LoadFile(path));
    if (settings.is_null()) return Json::object();  // an empty file
    if (!settings.is_object()) throw DataError("expected keys (main_prompt, tags, multiply, ...)");
    return settings;
  } catch (const std::exception& e) {
    throw DataError(path.string() + ": " + e.what());
  }
}

double parse_multiply(const Json& value, const fs::path& file) {
  try {
    const double multiply = value.is_number() ? value.get<double>() : std::stod(value.get<std::string>());
    if (multiply >= 0 && std::isfinite(multiply)) return multiply;
  } catch (const std::exception&) {
  }
  throw DataError(file.string() + ": multiply must be a number >= 0, not " + value.dump());
}

// What a caption or folder file says, as far as this model has a use for it.
struct Settings {
  std::optional<std::string> main_prompt;
  std::vector<std::string> tags;
  std::optional<double> multiply;
};

class Scanner {
 public:
  explicit Scanner(std::uint64_t seed) : seed_(seed) {}
  FolderScan scan(const fs::path& root);

 private:
  void walk(const fs::path& folder, const Settings& inherited);
  void add_image(const fs::path& image, const std::vector<fs::path>& files, const Settings& folder);
  Settings settings_from(const fs::path& file);
  void note(const std::string& kind, const std::string& text);
  int copies(const fs::path& image, double multiply) const;

  std::uint64_t seed_;
  FolderScan scan_;
  std::set<std::string> noted_;
};

// Once per kind of difference, naming the first file it was seen in.
void Scanner::note(const std::string& kind, const std::string& text) {
  if (noted_.insert(kind).second) scan_.notes.push_back(text);
}

Settings Scanner::settings_from(const fs::path& file) {
  const Json json = read_settings_file(file);
  Settings settings;
  for (auto& [key, value] : json.items()) {
    if (kUnusedKeys.count(key)) note(key, key + " (first seen in " + file.string() + ") is not used: " + kUnusedKeys.at(key));
    else if (!kUsedKeys.count(key)) note(key, "unknown key " + key + " (first seen in " + file.string() + ") is not used");
  }
  for (const char* key : {"main_prompt", "caption"}) {
    if (!json.contains(key) || settings.main_prompt) continue;
    const Json& prompt = json[key];
    if (prompt.is_array() && prompt.size() > 1)
      note("several prompts", "several " + std::string(key) + " values (first seen in " + file.string() +
           "): Bulkhead uses the first, EveryDream2 picks one at random each time");
    const Json& first = prompt.is_array() ? (prompt.empty() ? Json("") : prompt[0]) : prompt;
    settings.main_prompt = trim(first.is_string() ? first.get<std::string>() : first.dump());
  }
  for (const Json& tag : json.value("tags", Json::array())) {
    if (tag.is_object() && tag.contains("weight"))
      note("weight", "tag weights (first seen in " + file.string() + ") are not used: tags are kept in order, unweighted");
    const Json& text = tag.is_object() ? tag.value("tag", Json("")) : tag;
    settings.tags.push_back(trim(text.is_string() ? text.get<std::string>() : text.dump()));
  }
  if (json.contains("multiply")) settings.multiply = parse_multiply(json["multiply"], file);
  return settings;
}

// Inner settings add their tags to the outer ones and replace their main_prompt and multiply.
Settings merge(const Settings& outer, const Settings& inner) {
  Settings merged = outer;
  if (inner.main_prompt) merged.main_prompt = inner.main_prompt;
  if (inner.multiply) merged.multiply = inner.multiply;
  merged.tags.insert(merged.tags.end(), inner.tags.begin(), inner.tags.end());
  return merged;
}

// multiply 2.5: two copies, and a third for half of the images (chosen by seed and path, the same every run).
int Scanner::copies(const fs::path& image, double multiply) const {
  const double whole = std::floor(multiply);
  std::mt19937_64 rng(seed_ ^ std::hash<std::string>()(image.string()));
  return static_cast<int>(whole) + (std::uniform_real_distribution<double>(0, 1)(rng) < multiply - whole ? 1 : 0);
}

void Scanner::add_image(const fs::path& image, const std::vector<fs::path>& files, const Settings& folder) {
  std::vector<fs::path> sidecars;
  for (const char* ext : {".txt", ".caption", ".yaml", ".yml", ".json"})
    for (auto& file : files)
      if (file.stem() == image.stem() && lower(file.extension().string()) == ext) sidecars.push_back(file);
  if (sidecars.size() > 1)
    note("several sidecars", "several caption files for one image (first: " + image.string() + "): Bulkhead reads only " +
         sidecars.front().filename().string() + " (.txt, .caption, .yaml, .yml, .json in that order); EveryDream2 merges them");

  Settings own;
  FolderItem item{image, "", "file name", 1};
  const std::string ext = sidecars.empty() ? "" : lower(sidecars.front().extension().string());
  if (ext == ".txt" || ext == ".caption") own.main_prompt = trim(read_text(sidecars.front()));
  else if (!ext.empty()) own = settings_from(sidecars.front());
  if (!ext.empty()) item.caption_source = ext == ".yml" ? ".yaml" : ext;

  Settings settings = merge(folder, own);
  if (!own.main_prompt && folder.main_prompt) item.caption_source = "a folder's main_prompt";
  if (!settings.main_prompt) settings.main_prompt = image.stem().string().substr(0, image.stem().string().find('_'));
  item.caption = *settings.main_prompt;
  for (auto& tag : settings.tags)
    if (!tag.empty()) item.caption += (item.caption.empty() ? "" : ", ") + tag;
  item.copies = copies(image, settings.multiply.value_or(1.0));
  ++scan_.caption_sources[item.caption_source];
  if (item.copies > 0) scan_.items.push_back(std::move(item));
}

void Scanner::walk(const fs::path& folder, const Settings& inherited) {
  std::vector<fs::path> files, folders;
  for (auto& entry : fs::directory_iterator(folder, fs::directory_options::follow_directory_symlink)) {
    if (entry.path().filename().string().front() == '.') scan_.hidden.push_back(entry.path());
    else if (entry.is_directory()) folders.push_back(entry.path());
    else if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());  // the data order must not depend on the file system
  std::sort(folders.begin(), folders.end());

  Settings global = inherited, local;
  if (fs::exists(folder / "global.yaml")) global = merge(inherited, settings_from(folder / "global.yaml"));
  if (fs::exists(folder / "local.yaml")) local = settings_from(folder / "local.yaml");
  if (fs::exists(folder / "multiply.txt"))
    local.multiply = parse_multiply(Json(trim(read_text(folder / "multiply.txt"))), folder / "multiply.txt");
  const Settings here = merge(global, local);
  for (auto& file : files)
    if (is_image_file(file)) add_image(file, files, here);
  for (auto& sub : folders) walk(sub, global);
}

FolderScan Scanner::scan(const fs::path& root) {
  if (!fs::is_directory(root)) throw DataError("data_root " + root.string() + " is not a folder");
  walk(root, Settings{});
  return std::move(scan_);
}

}  // namespace

bool is_image_file(const fs::path& path) {
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".webp"};
  return kExtensions.count(lower(path.extension().string())) > 0;
}

FolderScan scan_folder(const fs::path& root, std::uint64_t seed) { return Scanner(seed).scan(root); }

}  // namespace bulkhead
