// keys.hpp — CurveZMQ key pairs for remote plugin hosts, in files a user can read and copy.
//
//   bulkhead host keys --out trainer   # trainer.key (secret, mode 600) and trainer.pub
//
// A .key file holds both keys, a .pub file the public one; each key is ZeroMQ's Z85 text (40
// characters). A public key may also be given as that text itself.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <vector>

namespace bulkhead::keys {

struct KeyPair {
  std::string public_key, secret_key;  // Z85
};

KeyPair make_key_pair();
// Writes stem.key and stem.pub (stem "trainer" -> trainer.key, trainer.pub); refuses to
// overwrite either. Returns the two paths.
std::pair<std::filesystem::path, std::filesystem::path> write_key_pair(const KeyPair& pair, const std::filesystem::path& stem);
// Throws std::runtime_error naming the file and what is wrong with it.
KeyPair read_key_pair(const std::filesystem::path& key_file);
// A public key: Z85 text, or a .pub (or .key) file, relative to `base_dir`.
std::string read_public_key(const std::string& text_or_file, const std::filesystem::path& base_dir = {});
// Every public key of the given .pub files (or Z85 texts): what a server admits.
std::set<std::string> read_public_keys(const std::vector<std::string>& texts_or_files);

}  // namespace bulkhead::keys
