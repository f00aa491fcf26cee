#include "server/auth.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

namespace madam::server {

namespace {

struct MethodRole {
  const char* method;
  Role role;
};

// The whole method -> role table. A method added to a .proto and not here is
// refused for every token (tests/integration/security_test.cc checks that
// every method of the services is listed).
constexpr std::array<MethodRole, 19> kMethodRoles = {{
    {"/madam.v1.Coordinator/SubmitSweep", Role::kAdmin},
    {"/madam.v1.Coordinator/CancelSweep", Role::kAdmin},
    {"/madam.v1.Coordinator/RerunSweep", Role::kAdmin},
    {"/madam.v1.Coordinator/PromoteSweep", Role::kAdmin},
    {"/madam.v1.Coordinator/ExtendSweep", Role::kAdmin},
    {"/madam.v1.Coordinator/ListSweeps", Role::kReader},
    {"/madam.v1.Coordinator/GetSweep", Role::kReader},
    {"/madam.v1.Coordinator/WatchSweep", Role::kReader},
    {"/madam.v1.Coordinator/ExportSweep", Role::kReader},
    {"/madam.v1.Coordinator/ListRuns", Role::kReader},
    {"/madam.v1.Coordinator/GetRun", Role::kReader},
    {"/madam.v1.Coordinator/GetRunMetrics", Role::kReader},
    {"/madam.v1.Coordinator/ListWorkers", Role::kReader},
    {"/madam.v1.Coordinator/GetReport", Role::kReader},
    {"/madam.v1.WorkerApi/RegisterWorker", Role::kWorker},
    {"/madam.v1.WorkerApi/AcquireRun", Role::kWorker},
    {"/madam.v1.WorkerApi/Heartbeat", Role::kWorker},
    {"/madam.v1.WorkerApi/ReportMetrics", Role::kWorker},
    {"/madam.v1.WorkerApi/CompleteRun", Role::kWorker},
}};

// Equality whose running time depends on the lengths only, not on where the
// strings first differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::string_view Trim(std::string_view s) {
  const char* space = " \t\r\n\f\v";
  const size_t begin = s.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  return s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

// A token must survive an HTTP/2 header unchanged: visible ASCII only.
bool IsValidToken(std::string_view token) {
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return !token.empty();
}

std::string ModeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kAdmin: return "admin";
    case Role::kReader: return "reader";
    case Role::kWorker: return "worker";
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view name) {
  if (name == "admin") return Role::kAdmin;
  if (name == "reader") return Role::kReader;
  if (name == "worker") return Role::kWorker;
  return std::nullopt;
}

bool RolePermits(Role have, Role need) { return have == need || have == Role::kAdmin; }

std::optional<Role> RequiredRole(std::string_view method) {
  for (const MethodRole& entry : kMethodRoles) {
    if (method == entry.method) return entry.role;
  }
  return std::nullopt;
}

std::vector<std::string> MethodsWithRoles() {
  std::vector<std::string> methods;
  for (const MethodRole& entry : kMethodRoles) methods.emplace_back(entry.method);
  return methods;
}

Result<TokenTable> TokenTable::Load(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Status::InvalidArgument("--auth-tokens " + path + ": cannot open (" +
                                   std::strerror(errno) + ")");
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::InvalidArgument("--auth-tokens " + path + ": not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return Status::PermissionDenied("--auth-tokens " + path + ": mode " + ModeText(st.st_mode) +
                                    " lets group or others read it; refusing a token file "
                                    "that is not private (chmod 600 " + path + ")");
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::InvalidArgument("--auth-tokens " + path + ": read failed (" +
                                     std::strerror(err) + ")");
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1 << 20)) {
      ::close(fd);
      return Status::InvalidArgument("--auth-tokens " + path + ": larger than 1 MiB");
    }
  }
  ::close(fd);

  TokenTable table;
  std::vector<int> first_line;  // line of each entry, for duplicate messages
  std::istringstream lines(text);
  std::string raw;
  int line_no = 0;
  while (std::getline(lines, raw)) {
    ++line_no;
    std::string_view line = raw;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    const std::vector<std::string_view> fields = Fields(line);
    // Messages below never quote the token field: a malformed line may still
    // hold a real secret.
    if (fields.size() != 2) {
      return Status::InvalidArgument(where + ": expected `TOKEN ROLE`, found " +
                                     std::to_string(fields.size()) + " field(s)");
    }
    if (!IsValidToken(fields[0])) {
      return Status::InvalidArgument(where + ": the token holds characters other than visible ASCII");
    }
    const std::optional<Role> role = ParseRole(fields[1]);
    if (!role) {
      return Status::InvalidArgument(where + ": unknown role \"" + std::string(fields[1]) +
                                     "\" (expected admin, reader or worker)");
    }
    for (size_t i = 0; i < table.entries_.size(); ++i) {
      if (table.entries_[i].token == fields[0]) {
        return Status::InvalidArgument(where + ": duplicate token (first on line " +
                                       std::to_string(first_line[i]) + ")");
      }
    }
    table.entries_.push_back(Entry{std::string(fields[0]), *role});
    first_line.push_back(line_no);
  }
  if (table.entries_.empty()) {
    return Status::InvalidArgument("--auth-tokens " + path + ": no `TOKEN ROLE` lines");
  }
  return table;
}

std::optional<Role> TokenTable::Find(std::string_view token) const {
  // No early exit: every entry is compared whatever matches.
  std::optional<Role> found;
  for (const Entry& entry : entries_) {
    if (ConstantTimeEquals(entry.token, token)) found = entry.role;
  }
  return found;
}

Status Authorize(const TokenTable& tokens, std::string_view method, std::string_view authorization) {
  constexpr std::string_view kScheme = "Bearer ";
  if (authorization.empty()) {
    return Status::Unauthenticated("no token: send `authorization: Bearer TOKEN` (madamctl --token, "
                                   "MADAM_TOKEN)");
  }
  if (authorization.size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), authorization.begin(),
                  [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
    return Status::Unauthenticated("the authorization header is not `Bearer TOKEN`");
  }
  const std::optional<Role> role = tokens.Find(Trim(authorization.substr(kScheme.size())));
  if (!role) return Status::Unauthenticated("unknown token");
  const std::optional<Role> need = RequiredRole(method);
  if (!need) {
    // Not echoed: the client chose this string.
    return Status::PermissionDenied("the method is not open to any role");
  }
  if (!RolePermits(*role, *need)) {
    return Status::PermissionDenied(std::string(method) + " needs the " + RoleName(*need) +
                                    " role; this token has the " + RoleName(*role) + " role");
  }
  return Status::Ok();
}

}  // namespace madam::server
