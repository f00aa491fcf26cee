// Who may call what (ARCHITECTURE.md section 9): the token file behind
// --auth-tokens, the role of each gRPC method, and the one decision that
// turns an `authorization` header and a method into OK, UNAUTHENTICATED or
// PERMISSION_DENIED. server/server_credentials.cc runs that decision for every
// call, before any handler, so this file is the whole policy.
//
// Thread-safety: TokenTable is immutable after Load() and safe to share
// between threads; the free functions hold no state.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace madam::server {

// admin: submit, cancel, rerun, and everything reader and worker may do.
// reader: list, show, watch, export, reports. worker: the WorkerApi (leases,
// heartbeats, metrics, completion).
enum class Role { kAdmin, kReader, kWorker };

const char* RoleName(Role role);
std::optional<Role> ParseRole(std::string_view name);

// True when a token with role `have` may call a method that needs `need`.
bool RolePermits(Role have, Role need);

// The role a method needs, by its full gRPC name
// ("/madam.v1.Coordinator/SubmitSweep"); nullopt for a method no role may call
// (anything not in the table: the policy fails closed).
std::optional<Role> RequiredRole(std::string_view method);

// Every method in the table, for tests that check it covers the protos.
std::vector<std::string> MethodsWithRoles();

// Bearer tokens and their roles, loaded from an --auth-tokens file.
class TokenTable {
 public:
  // Reads `path`: one `TOKEN ROLE` pair per line, `#` starts a comment, blank
  // lines are skipped. Refuses (INVALID_ARGUMENT / PERMISSION_DENIED) a file
  // that group or others may read or write, a malformed line (naming
  // path:line, never the token), an unknown role, a duplicate token and a
  // file with no tokens.
  static Result<TokenTable> Load(const std::string& path);

  // The role of `token`, or nullopt. Compares against every entry in time that
  // does not depend on where the first differing byte is.
  std::optional<Role> Find(std::string_view token) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string token;
    Role role;
  };
  std::vector<Entry> entries_;
};

// The decision for one call: `method` is the full name, `authorization` the
// value of the `authorization` header (empty when absent). OK; UNAUTHENTICATED
// for a missing, malformed or unknown token; PERMISSION_DENIED naming the role
// the method needs. Messages never contain the token.
Status Authorize(const TokenTable& tokens, std::string_view method, std::string_view authorization);

}  // namespace madam::server
