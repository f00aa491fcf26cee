// The lease rules of ARCHITECTURE.md section 5, each written once and free
// of SQL: lease secrets and their hashes, the check that a call holds the
// lease it names, and where a run goes when an attempt ends without success.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "server/store.h"

namespace madam::server {

// 128 bits from the kernel's CSPRNG, as 32 hex digits.
Result<std::string> NewLeaseSecret();

// SHA-256 of a lease secret, as 64 hex digits: what the database keeps.
std::string HashLeaseSecret(const std::string& secret);

// True when `secret` hashes to `stored_hash` (compared in constant time);
// false for an empty one of either.
bool SecretMatches(const std::string& stored_hash, const std::string& secret);

// The one refusal for a call that does not hold the lease: it names the run,
// never the epoch or secret that would have been right.
Status NotTheHolder(const std::string& run_id);

// What the lease check reads of a run's row.
struct LeaseRow {
  std::string state;  // as stored: "RUNNING", ...
  int64_t epoch = 0;
  std::string worker;
  std::string secret_hash;
};

// OK when a call with `epoch` from `holder` holds the lease of the run
// `run_id` whose row is `row`: the epoch is current (else
// FAILED_PRECONDITION, naming only the caller's epoch), the worker and secret
// are the holder's (else PERMISSION_DENIED) and the run is RUNNING (else
// FAILED_PRECONDITION).
Status CheckHolder(const std::string& run_id, const LeaseRow& row, int64_t epoch,
                   const LeaseHolder& holder);

// Where a run goes when an attempt ends without success (its lease expired,
// or its worker completed it FAILED), `attempts` counting that attempt:
// CANCELLED when a cancel was requested, PENDING for another attempt while
// attempts remain, FAILED after the last.
RunState StateAfterFailedAttempt(bool cancel_requested, int64_t attempts, int64_t max_attempts);

}  // namespace madam::server
