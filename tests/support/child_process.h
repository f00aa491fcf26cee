// ChildProcess: a subprocess owned by a test or benchmark (RAII). Starts a
// program with arguments, captures its stdout line by line on a reader thread
// (stderr passes through to the test's), and kills it in the destructor.
//
// Thread-safety: one owner thread drives it; WaitForLine may be called while
// the reader thread appends lines (guarded by mu_).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace madam::testing {

class ChildProcess {
 public:
  // Starts argv[0] with the arguments; throws std::runtime_error if it cannot.
  explicit ChildProcess(std::vector<std::string> argv);
  ~ChildProcess();  // SIGKILL if still running, then reap
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `signal` (SIGTERM, SIGKILL, SIGSTOP, SIGCONT, ...).
  void Signal(int signal) const;
  // Waits for exit up to `timeout`; the exit code (128 + signal when killed),
  // or nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  // The first stdout line matching `pattern` (searching lines already read
  // too), waiting up to `timeout`; nullopt on timeout or exit.
  // Returns the match groups (0: the whole match).
  std::optional<std::vector<std::string>> WaitForLine(const std::regex& pattern,
                                                      std::chrono::milliseconds timeout);
  std::vector<std::string> Lines() const;

 private:
  void ReadLoop(int fd);

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;  // guarded by mu_
  bool eof_ = false;                // guarded by mu_
};

// Starts madamd on a free loopback port with the given database; returns the
// process and its address ("127.0.0.1:PORT"). Extra flags are appended.
struct Madamd {
  std::unique_ptr<ChildProcess> process;
  std::string address;
};
Madamd StartMadamd(const std::string& madamd_path, const std::string& db_path,
                   const std::vector<std::string>& extra_flags = {},
                   const std::string& listen = "127.0.0.1:0");

// A fresh empty directory under the system temp dir, removed with its
// contents when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace madam::testing
