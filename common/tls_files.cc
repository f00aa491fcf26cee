#include "common/tls_files.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace madam {

namespace {
constexpr std::streamoff kMaxPemBytes = 1 << 20;
}  // namespace

Result<std::string> ReadPemFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::InvalidArgument(flag + " " + path + ": cannot read (" + std::strerror(errno) + ")");
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size > kMaxPemBytes) {
    return Status::InvalidArgument(flag + " " + path + ": " + std::to_string(size) +
                                   " bytes is too large for a PEM file (limit 1 MiB)");
  }
  in.seekg(0);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in && !in.eof()) {
    return Status::InvalidArgument(flag + " " + path + ": read failed (is it a directory?)");
  }
  std::string pem = text.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return Status::InvalidArgument(flag + " " + path +
                                   ": not a PEM file (no \"-----BEGIN\" line)");
  }
  return pem;
}

Result<TlsPem> LoadTlsPem(const std::string& ca_flag, const std::string& ca_path,
                          const std::string& cert_path, const std::string& key_path) {
  if (cert_path.empty() != key_path.empty()) {
    return Status::InvalidArgument(cert_path.empty() ? "--tls-key needs --tls-cert"
                                                     : "--tls-cert needs --tls-key");
  }
  TlsPem pem;
  if (!ca_path.empty()) {
    auto ca = ReadPemFile(ca_flag, ca_path);
    if (!ca.ok()) return ca.status();
    pem.ca = std::move(*ca);
  }
  if (!cert_path.empty()) {
    auto cert = ReadPemFile("--tls-cert", cert_path);
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile("--tls-key", key_path);
    if (!key.ok()) return key.status();
    pem.cert = std::move(*cert);
    pem.key = std::move(*key);
  }
  return pem;
}

}  // namespace madam
