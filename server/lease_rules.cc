#include "server/lease_rules.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>

namespace madam::server {

// 128 bits from the kernel's CSPRNG, as 32 hex digits.
Result<std::string> NewLeaseSecret() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Unavailable(std::string("cannot draw a lease secret: getrandom: ") +
                                 std::strerror(errno));
    }
    got += static_cast<size_t>(n);
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// SHA-256 of a lease secret, as 64 hex digits: what the database keeps. The
// secret has 128 bits of entropy, so an unkeyed hash is enough: a reader of
// the database cannot invert it to present the secret.
std::string HashLeaseSecret(const std::string& secret) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(secret.data(), secret.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    return std::string();  // never matches a stored hash (see SecretMatches)
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

bool SecretMatches(const std::string& stored_hash, const std::string& secret) {
  if (stored_hash.empty() || secret.empty()) return false;
  const std::string hash = HashLeaseSecret(secret);
  return hash.size() == stored_hash.size() &&
         CRYPTO_memcmp(hash.data(), stored_hash.data(), hash.size()) == 0;
}

// The one refusal for a call that does not hold the lease: it names the run,
// never the epoch or secret that would have been right.
Status NotTheHolder(const std::string& run_id) {
  return Status::PermissionDenied("run '" + run_id +
                                  "': the caller does not hold this lease (wrong worker or lease "
                                  "secret)");
}

Status CheckHolder(const std::string& run_id, const LeaseRow& row, int64_t epoch,
                   const LeaseHolder& holder) {
  // Never name the current epoch: a caller that does not hold the lease
  // must learn nothing that helps it pose as the holder.
  if (epoch != row.epoch) {
    return Status::FailedPrecondition("stale lease epoch " + std::to_string(epoch) + " for run '" +
                                      run_id + "': the run was leased again since");
  }
  if (holder.worker_id != row.worker || !SecretMatches(row.secret_hash, holder.secret)) {
    return NotTheHolder(run_id);
  }
  if (row.state != "RUNNING") {
    auto parsed = ParseRunState(row.state);
    return Status::FailedPrecondition("lease epoch " + std::to_string(epoch) + " for run '" + run_id +
                                      "' is no longer held (run is " +
                                      (parsed ? RunStateName(*parsed) : row.state.c_str()) + ")");
  }
  return Status::Ok();
}

RunState StateAfterFailedAttempt(bool cancel_requested, int64_t attempts, int64_t max_attempts) {
  if (cancel_requested) return RunState::kCancelled;
  return attempts < max_attempts ? RunState::kPending : RunState::kFailed;
}

}  // namespace madam::server
