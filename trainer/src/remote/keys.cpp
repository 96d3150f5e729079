#include "remote/keys.hpp"

#include <sys/stat.h>

#include <array>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include <zmq.h>

namespace bulkhead::keys {
namespace fs = std::filesystem;
namespace {

bool is_z85_key(const std::string& text) {
  std::array<std::uint8_t, 32> bytes{};
  return text.size() == 40 && zmq_z85_decode(bytes.data(), text.c_str()) != nullptr;
}

// "name = value" lines, or a key alone (a .pub file); '#' starts a comment. (Z85 has both '='
// and '#' among its characters: a key is recognised first.)
std::map<std::string, std::string> read_fields(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read the key file " + file.string());
  std::map<std::string, std::string> fields;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (is_z85_key(line)) {
      fields["public"] = line;
      continue;
    }
    const auto equals = line.find('=');
    if (line.empty() || line[0] == '#' || equals == std::string::npos) continue;
    auto trim = [](std::string text) {
      text.erase(0, text.find_first_not_of(" \t\""));
      text.erase(text.find_last_not_of(" \t\"\r") + 1);
      return text;
    };
    fields[trim(line.substr(0, equals))] = trim(line.substr(equals + 1));
  }
  return fields;
}

std::string checked(const fs::path& file, const std::map<std::string, std::string>& fields, const std::string& which) {
  const auto found = fields.find(which);
  if (found == fields.end()) throw std::runtime_error("the key file " + file.string() + " has no " + which + " key");
  if (!is_z85_key(found->second))
    throw std::runtime_error("the " + which + " key in " + file.string() + " is not a CURVE key (40 characters of Z85)");
  return found->second;
}

}  // namespace

KeyPair make_key_pair() {
  std::array<char, 41> public_key{}, secret_key{};
  if (zmq_curve_keypair(public_key.data(), secret_key.data()) != 0)
    throw std::runtime_error("this libzmq cannot make CURVE keys (built without libsodium)");
  return {public_key.data(), secret_key.data()};
}

std::pair<fs::path, fs::path> write_key_pair(const KeyPair& pair, const fs::path& stem) {
  const fs::path key = fs::path(stem).concat(".key"), pub = fs::path(stem).concat(".pub");
  for (const auto& file : {key, pub})
    if (fs::exists(file)) throw std::runtime_error(file.string() + " exists already: choose another --out, or remove it first");
  {
    // Made unreadable to others before the secret goes in.
    std::ofstream(key).close();
    ::chmod(key.c_str(), 0600);
    std::ofstream out(key);
    out << "# A bulkhead CURVE key pair. Keep this file secret; hand out " << pub.filename().string() << ".\n"
        << "public = " << pair.public_key << "\nsecret = " << pair.secret_key << "\n";
    if (!out.flush()) throw std::runtime_error("cannot write " + key.string());
  }
  std::ofstream out(pub);
  out << pair.public_key << "\n";
  if (!out.flush()) throw std::runtime_error("cannot write " + pub.string());
  return {key, pub};
}

KeyPair read_key_pair(const fs::path& key_file) {
  const auto fields = read_fields(key_file);
  KeyPair pair{checked(key_file, fields, "public"), checked(key_file, fields, "secret")};
  std::array<char, 41> derived{};
  if (zmq_curve_public(derived.data(), pair.secret_key.c_str()) != 0 || pair.public_key != derived.data())
    throw std::runtime_error("the public key in " + key_file.string() + " does not belong to its secret key");
  return pair;
}

std::string read_public_key(const std::string& text_or_file, const fs::path& base_dir) {
  if (is_z85_key(text_or_file)) return text_or_file;
  fs::path file = text_or_file;
  if (file.is_relative() && !base_dir.empty()) file = base_dir / file;
  if (!fs::exists(file))
    throw std::runtime_error("'" + text_or_file + "' is neither a CURVE public key (40 characters of Z85) nor a key file");
  return checked(file, read_fields(file), "public");
}

std::set<std::string> read_public_keys(const std::vector<std::string>& texts_or_files) {
  std::set<std::string> keys;
  for (const auto& text : texts_or_files) keys.insert(read_public_key(text));
  return keys;
}

}  // namespace bulkhead::keys
