// Reading the PEM files behind the --tls-* flags of madamd, madamctl and
// madam-worker, with errors that name the flag and the file (the one reader
// all three share; the gRPC credentials are built by each binary).
//
// Thread-safety: free functions over values; no shared state.
#pragma once

#include <string>

#include "common/status.h"

namespace madam {

// The contents of one PEM file named by `flag` (e.g. "--tls-ca"). Fails with
// INVALID_ARGUMENT naming the flag and the path when the file cannot be read,
// is empty, is larger than 1 MiB or holds no "-----BEGIN " block. The text
// is never included in a message (a key file holds a secret).
Result<std::string> ReadPemFile(const std::string& flag, const std::string& path);

// PEM text for one end of a TLS connection; empty fields are unused.
struct TlsPem {
  std::string ca;    // roots that verify the peer (client: the server; server: clients)
  std::string cert;  // this end's certificate chain
  std::string key;   // this end's private key
};

// Reads the files of a --tls-ca/--tls-cert/--tls-key style triple (`ca_flag`
// names the first flag as the binary spells it). Empty paths are skipped;
// --tls-cert and --tls-key must come together.
Result<TlsPem> LoadTlsPem(const std::string& ca_flag, const std::string& ca_path,
                          const std::string& cert_path, const std::string& key_path);

}  // namespace madam
